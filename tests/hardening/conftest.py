"""Shared helpers for the hardening suite: hostile clients, broken backends, caps, crashes.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/hardening

Environment:
  CERTBIND_BIN         the binary (default: build/certbind in the repository)
  CERTBIND_SANITIZED   1: the binary is built with ASan+UBSan (also detected from the binary);
                       waits get longer and the TLS scan is skipped

Every server listens on loopback addresses only (IP bindings on 127.0.0.0/8; SNI bindings
listen on the wildcard as certbind always does, and are reached on 127.0.0.1 only), on ports
found free, and is started and stopped by its own PIDs. As root, serve runs as the system user
`certbind` (created when missing).
"""

import datetime
import json
import os
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
SERVICE_USER = "certbind"


def _binary_sanitized():
    if os.environ.get("CERTBIND_SANITIZED") == "1":
        return True
    try:
        with open(BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = _binary_sanitized()
# Waits are guards against a hang, never timing assertions: generous, longer under ASan.
SLOW = 3.0 if SANITIZED else 1.0
CMD_TIMEOUT = 120

# Hundreds of sockets in this process, and the servers it starts inherit the limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 16384 if _hard == resource.RLIM_INFINITY else min(_hard, 16384)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

FIGURES = {}


def figure(name, value):
    """A measured figure, printed at the end of the run (not a pass/fail criterion)."""
    FIGURES[name] = value


def pytest_report_header(config):
    return "certbind binary: %s%s; RLIMIT_NOFILE %d" % (
        BIN, " (sanitized)" if SANITIZED else "", NOFILE)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.write_sep("-", "hardening figures")
        for k, v in FIGURES.items():
            terminalreporter.write_line("%s: %s" % (k, v))


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN" % BIN, 2)


@pytest.fixture(scope="session")
def service_user():
    """As root: the system user serve runs as (created when missing). Else None."""
    if os.geteuid() != 0:
        return None
    if subprocess.run(["id", SERVICE_USER], capture_output=True).returncode != 0:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", SERVICE_USER], capture_output=True)
        # useradd fails when another test file's process (ctest runs them side by side) made
        # the user meanwhile: only a user that is still missing is an error.
        if r.returncode != 0 and subprocess.run(["id", SERVICE_USER],
                                                capture_output=True).returncode != 0:
            raise AssertionError("useradd %s: %s" % (SERVICE_USER, r.stderr.decode()))
    return SERVICE_USER


@pytest.fixture
def work():
    """A folder other users can traverse (the service user reads certificates under it)."""
    d = Path(tempfile.mkdtemp(prefix="cb-hard-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def base_env(work):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
    env["HOME"] = str(work)
    env["XDG_STATE_HOME"] = str(work / "xdg-state")
    env["LC_ALL"] = "C.UTF-8"
    return env


# -- certificates ----------------------------------------------------------------------------

class Cert:
    def __init__(self, folder, name, cn, sans, rsa_key=False):
        key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key
               else ec.generate_private_key(ec.SECP256R1()))
        now = datetime.datetime.utcnow().replace(microsecond=0)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.cn = cn
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
        self.cert_path = Path(folder) / (name + ".crt")
        self.key_path = Path(folder) / (name + ".key")
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.key_path.chmod(0o600)


# -- the store -------------------------------------------------------------------------------

class Store:
    """A state folder (created by certbind itself, 0700) and the commands run against it."""

    def __init__(self, work, user):
        self.work = Path(work)
        self.state = self.work / "state"
        self.db = self.state / "certbind.db"
        self.user = user
        self.pki = self.work / "pki"
        self.pki.mkdir(exist_ok=True)
        self.pki.chmod(0o755)
        self.n = 0

    def env(self):
        return base_env(self.work)

    def argv(self, *args):
        return [BIN, "--state", str(self.state)] + [str(a) for a in args]

    def run(self, *args):
        p = subprocess.run(self.argv(*args), env=self.env(), capture_output=True,
                           timeout=CMD_TIMEOUT * SLOW)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8",
                                                                                   "replace")

    def ok(self, *args):
        rc, out, err = self.run(*args)
        assert rc == 0, "certbind %s: rc=%d\nstdout: %s\nstderr: %s" % (args, rc, out, err)
        return out

    def cert(self, cn, sans=None, rsa_key=False):
        """Makes a certificate (EC P-256, or RSA 2048) and imports it; returns the Cert."""
        self.n += 1
        c = Cert(self.pki, "c%d" % self.n, cn, sans or [cn], rsa_key)
        out = self.ok("add", "cert", c.cert_path, "key=%s" % c.key_path)
        assert out.strip() == c.thumbprint
        return c

    def bind(self, key, cert, *opts):
        self.ok("add", "sslcert", key, "certhash=%s" % cert.thumbprint, *opts)

    def bindings(self):
        return json.loads(self.ok("show", "sslcert", "--json"))["bindings"]


@pytest.fixture
def store(work, service_user):
    """A fresh store; as root its service user is set first (serve needs one)."""
    st = Store(work, service_user)
    if service_user is not None:
        st.ok("set", "user=%s" % service_user)
    return st


# -- ports and sockets -----------------------------------------------------------------------

def _ipv6():
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        return True
    except OSError:
        return False


IPV6 = _ipv6()


def free_port():
    """A TCP port free on every address (SNI bindings listen dual-stack on [::])."""
    for _ in range(50):
        if IPV6:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
        s.close()
        if port >= 1024:
            return port
    raise AssertionError("no free port")


def client_ctx(tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_connect(host, port, sni=None, timeout=None, rcvbuf=None, tls12=False):
    """A TLS client connection (handshake done). Raises ssl.SSLError when it fails."""
    timeout = timeout or 10 * SLOW
    raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    try:
        raw.connect((host, port))
        return client_ctx(tls12).wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def peer_der(s):
    return s.getpeercert(binary_form=True)


def read_until_closed(s, deadline):
    """Reads until the peer closes; returns (bytes, how) with how in eof/reset/timeout."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (socket.timeout, TimeoutError):
            return data, "timeout"
        except ssl.SSLEOFError:
            return data, "eof"
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        except ssl.SSLError as e:
            return data, "tls-error: %s" % e
        if not chunk:
            return data, "eof"
        data += chunk


# -- processes -------------------------------------------------------------------------------

def comm(pid):
    """A process's name (/proc/PID/comm), or "" when it is gone."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def children(pid):
    """PIDs whose parent is pid."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def proc_status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def rss_kb(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def cpu_seconds(pid):
    """User + system CPU time of pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def parse_line(line):
    """A key=value log line as a dict (values unquoted)."""
    out = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        j = line.find("=", i)
        if j < 0:
            break
        key = line[i:j]
        i = j + 1
        if i < n and line[i] == '"':
            i += 1
            val = []
            while i < n and line[i] != '"':
                if line[i] == "\\" and i + 1 < n:
                    i += 1
                val.append(line[i])
                i += 1
            i += 1
            out[key] = "".join(val)
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            out[key] = line[i:j]
            i = j
    return out


class Server:
    """One `certbind serve`, its log in a file, stopped by PID."""

    def __init__(self, store, *flags, workers=2, nofile=None):
        self.store = store
        self.nofile = nofile
        self.flags = [str(f) for f in flags]
        self.workers_n = workers
        self.proc = None
        self.log_path = None
        self.starts = 0
        self.worker_pids = []
        store.servers = getattr(store, "servers", 0) + 1
        self.id = store.servers

    def start(self):
        self.starts += 1
        self.log_path = self.store.work / ("serve-%d-%d.log" % (self.id, self.starts))
        argv = self.store.argv("serve", "--workers", self.workers_n, *self.flags)
        if "--grace" not in self.flags:
            argv += ["--grace", "1"]
        with open(self.log_path, "wb") as log:
            limit = None
            if self.nofile is not None:
                n = self.nofile

                def limit():
                    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            self.proc = subprocess.Popen(argv, env=self.store.env(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         preexec_fn=limit)
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline:
            if "event=ready" in self.log():
                break
            if self.proc.poll() is not None:
                raise AssertionError("serve exited %s before it was ready:\n%s" % (
                    self.proc.returncode, self.log()))
            time.sleep(0.05)
        else:
            self.kill9()
            raise AssertionError("serve was not ready in time:\n%s" % self.log())
        self.worker_pids = self.workers()
        assert len(self.worker_pids) == self.workers_n, self.log()
        return self

    def log(self):
        return self.log_path.read_text("utf-8", "replace") if self.log_path else ""

    def events(self, event=None):
        out = []
        for line in self.log().splitlines():
            if "event=" not in line:
                continue
            d = parse_line(line)
            if event is None or d.get("event") == event:
                out.append(d)
        return out

    def wait_event(self, event, timeout=10, pred=None, count=1):
        deadline = time.monotonic() + timeout * SLOW
        while True:
            found = [e for e in self.events(event) if pred is None or pred(e)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("no %d %s line(s) in time; log:\n%s" % (
                    count, event, self.log()[-4000:]))
            time.sleep(0.05)

    def generation(self):
        snaps = self.events("snapshot")
        return int(snaps[-1]["generation"]) if snaps else -1

    def workers(self):
        """The worker processes (cb-worker-N), not the manager or the admin process."""
        return sorted(p for p in children(self.proc.pid) if comm(p).startswith("cb-worker")) \
            if self.proc else []

    def all_pids(self):
        return [self.proc.pid] + sorted(children(self.proc.pid))

    def rss_kb(self):
        return sum(rss_kb(p) for p in self.workers())

    def sanitizer_errors(self):
        """Sanitizer reports in the logs of every start of this server."""
        out = []
        for n in range(1, self.starts + 1):
            path = self.store.work / ("serve-%d-%d.log" % (self.id, n))
            text = path.read_text("utf-8", "replace") if path.exists() else ""
            out += [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKS)]
        return out

    def kill9(self):
        """SIGKILL the master and its workers, by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = self.workers()
        for pid in [self.proc.pid] + pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10 * SLOW
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self):
        """SIGTERM (drain, --grace 1); returns the master's exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30 * SLOW)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError("serve did not stop on SIGTERM:\n%s" % self.log()[-4000:])


@pytest.fixture
def serve(store):
    """serve(*flags, workers=2, nofile=None) -> a started Server; stopped after the test, whose
    log must then show no sanitizer report and whose master must exit 0. nofile: the serve
    process's RLIMIT_NOFILE."""
    servers = []

    def start(*flags, workers=2, nofile=None):
        s = Server(store, *flags, workers=workers, nofile=nofile)
        servers.append(s)
        return s.start()

    yield start
    problems = []
    for s in servers:
        was_running = s.proc is not None and s.proc.poll() is None
        rc = s.stop()
        if was_running and rc != 0:
            problems.append("serve exited %s on SIGTERM" % rc)
        problems += s.sanitizer_errors()
    assert not problems, "\n".join(problems) + "\n" + servers[-1].log()[-4000:]


# -- backends --------------------------------------------------------------------------------

class Backend:
    """A TCP backend on 127.0.0.1 whose behaviour per connection is handler(conn, backend).
    Threads end when the test stops it (bounded by socket timeouts)."""

    def __init__(self, handler, backlog=64, accept=True):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.stopping = threading.Event()
        self.conns = []
        self.sent = 0
        self.received = 0
        self.threads = []
        if accept:
            t = threading.Thread(target=self._accept, daemon=True)
            t.start()
            self.threads.append(t)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        try:
            self.handler(c, self)
        except OSError:
            pass

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=5)
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()


@pytest.fixture
def backends():
    made = []

    def make(handler, **kw):
        b = Backend(handler, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def http_ok_handler(c, be):
    """Reads one request, answers 200 with a short body, closes."""
    c.settimeout(10 * SLOW)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            return
        data += chunk
    body = b"hello from the backend\n"
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
              % (len(body), body))
    c.close()


def sink_handler(c, be):
    """Reads until the other side ends, then closes."""
    c.settimeout(0.5)
    while not be.stopping.is_set():
        try:
            if not c.recv(65536):
                break
        except (socket.timeout, TimeoutError):
            continue
    c.close()


def http_get(s, host="x"):
    s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
    data, how = read_until_closed(s, time.monotonic() + 10 * SLOW)
    return data, how


def wait_readable(socks, deadline):
    """Waits until every socket in socks is readable (or the deadline); returns the readable."""
    ready = set()
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        left = max(0.0, deadline - time.monotonic())
        poller = select.poll()
        by_fd = {s.fileno(): s for s in pending}
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        for fd, _ in poller.poll(min(left, 1.0) * 1000):
            ready.add(by_fd[fd])
        pending = [s for s in pending if s not in ready]
    return ready
