"""Helpers for the `certbind serve` end-to-end suite: certificates, the server
process, TLS clients, test backends and PROXY protocol parsing.

Everything runs on loopback (127.0.0.0/8 and ::1) with ports picked by binding
port 0. Processes are started and stopped by PID only.
"""

import datetime
import hashlib
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
VALGRIND = os.environ.get("CERTBIND_VALGRIND") == "1"
# --vgdb=no: after the privilege drop the server could not remove the gdbserver pipes
# valgrind made as root, and valgrind would report that.
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--trace-children=yes",
                "--vgdb=no", "-q"]
# Generous bounds, never timing assertions: valgrind makes everything slower.
SLOW = 10 if VALGRIND else 1
STARTUP = 180 if VALGRIND else 20
IS_ROOT = os.geteuid() == 0
SERVICE_USER = "certbind"
ERR = "certbind: error: "
# What AddressSanitizer, LeakSanitizer and UBSan print: an ASan build must show none.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def binary_sanitized():
    """Whether BIN is an ASan/UBSan build (CERTBIND_SANITIZED=1 says so, else the binary)."""
    if os.environ.get("CERTBIND_SANITIZED") == "1":
        return True
    try:
        with open(BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def ensure_service_user():
    """As root: the system user serve drops to (created if missing), as a pwd entry.
    Otherwise None."""
    if not IS_ROOT:
        return None
    if subprocess.run(["id", SERVICE_USER], capture_output=True).returncode != 0:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", SERVICE_USER], capture_output=True)
        # useradd fails when another test file's process (ctest runs them side by side) made
        # the user meanwhile: only a user that is still missing is an error.
        if r.returncode != 0 and subprocess.run(["id", SERVICE_USER],
                                                capture_output=True).returncode != 0:
            raise AssertionError("useradd %s: %s" % (SERVICE_USER, r.stderr.decode()))
    import pwd

    return pwd.getpwnam(SERVICE_USER)


def poll_until(fn, timeout, interval=0.05):
    """Calls fn until it returns something true, for at most timeout seconds; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


_ports_given = set()


def free_port():
    """A TCP port free on every local address (checked with a dual-stack socket), and not
    one this process handed out before (the kernel may give a just-released port again:
    two servers of one test would then be told the same port)."""
    while True:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def dead_port():
    """A loopback port where nothing listens: connecting to it is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- certificates ----------------------------------------------------------


class Cert:
    """A certificate and key on disk, with its SHA-1 thumbprint as certbind prints it."""

    def __init__(self, cert, key, cert_path, key_path):
        self.cert = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.thumb = hashlib.sha1(self.der).hexdigest().upper()
        self.cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def make_cert(folder, stem, cn, names=(), client=False, key_type="ec"):
    """key_type: "ec" (P-256) or "rsa" (2048 bits)."""
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
    )
    if names:
        sans = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if client:
        b = b.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = b.sign(key, hashes.SHA256())
    folder = Path(folder)
    cert_path = folder / (stem + ".crt")
    key_path = folder / (stem + ".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return Cert(cert, key, cert_path, key_path)


def thumb_of_der(der):
    return hashlib.sha1(der).hexdigest().upper()


# ---- the state folder and the CLI -------------------------------------------


def base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
    for k in ("INVOCATION_ID", "JOURNAL_STREAM"):
        env.pop(k, None)
    env["LC_ALL"] = "C.UTF-8"
    return env


class State:
    """One certbind state folder and the commands run against it."""

    def __init__(self, folder):
        self.dir = Path(folder)
        self.state = self.dir / "state"
        self.servers = []

    def run(self, *args, check=True):
        cmd = [BIN, "--state", str(self.state)] + [str(a) for a in args]
        p = subprocess.run(cmd, env=base_env(), capture_output=True, timeout=120)
        out, err = p.stdout.decode(), p.stderr.decode()
        if check and p.returncode != 0:
            raise AssertionError("%s exited %d:\n%s%s" % (" ".join(cmd), p.returncode, out, err))
        return p.returncode, out, err

    def add_cert(self, cert):
        _, out, _ = self.run("add", "cert", cert.cert_path, "key=%s" % cert.key_path)
        thumb = out.strip()
        assert thumb == cert.thumb, (thumb, cert.thumb)
        return thumb

    def add(self, key, cert=None, **opts):
        args = ["add", "sslcert", key]
        if cert is not None:
            args.append("certhash=%s" % (cert if isinstance(cert, str) else cert.thumb))
        args += ["%s=%s" % (k, v) for k, v in opts.items()]
        self.run(*args)

    def update(self, key, **opts):
        self.run("update", "sslcert", key, *["%s=%s" % (k, v) for k, v in opts.items()])

    def delete(self, key):
        self.run("delete", "sslcert", key)

    def resolve(self, ip, port, sni=None):
        args = ["--json", "resolve", "ip=%s" % ip, "port=%d" % port]
        if sni is not None:
            args.append("sni=%s" % sni)
        _, out, _ = self.run(*args)
        return json.loads(out)

    def key_file(self, thumb):
        return self.state / "keys" / (thumb + ".key")

    def serve(self, **kw):
        s = Server(self, **kw)
        self.servers.append(s)
        return s

    def cleanup(self):
        for s in self.servers:
            s.kill()


# ---- the server process ------------------------------------------------------


class Server:
    """`certbind serve`, started by the test and stopped by its PID."""

    def __init__(self, state, workers=1, handshake_timeout=None, idle_timeout=None, grace=None,
                 admin=None, admin_public=False, extra_args=()):
        self.st = state
        self.args = ["--workers", str(workers)]
        self.admin = admin  # "ADDR:PORT" of --admin, or None
        if admin is not None:
            self.args += ["--admin", admin]
        if admin_public:
            self.args.append("--admin-public")
        self.args += [str(a) for a in extra_args]
        if handshake_timeout is not None:
            self.args += ["--handshake-timeout", str(handshake_timeout)]
        if idle_timeout is not None:
            self.args += ["--idle-timeout", str(idle_timeout)]
        if grace is not None:
            self.args += ["--grace", str(grace)]
        self.proc = None
        n = len(state.servers)
        self.log_path = state.dir / ("serve-%d.log" % n)
        self.out_path = state.dir / ("serve-%d.out" % n)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait_ready=True):
        cmd = (VALGRIND_CMD if VALGRIND else []) + [BIN, "--state", str(self.st.state), "serve"]
        cmd += self.args
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=base_env())
        if wait_ready:
            self.wait_log(r"event=ready\b", STARTUP)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self, event):
        return [l for l in self.log().splitlines() if re.search(r"\bevent=%s\b" % event, l)]

    def wait_log(self, pattern, timeout, after=0):
        """Waits for a log line matching pattern (a regex) at or after character offset `after`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            m = rx.search(text, after)
            if m:
                return text[text.rfind("\n", 0, m.start()) + 1 : text.find("\n", m.end())]
            if self.proc.poll() is not None:
                text = self.log()
                m = rx.search(text, after)
                if m:
                    return m.group(0)
                raise AssertionError(
                    "serve exited %s before logging %r; log:\n%s" % (self.proc.returncode, pattern, text)
                )
            if time.monotonic() >= deadline:
                raise AssertionError("serve did not log %r within %ss; log:\n%s" % (pattern, timeout, text))
            time.sleep(0.02)

    def signal(self, sig):
        assert self.proc.poll() is None, "serve is not running; log:\n" + self.log()
        os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("serve did not exit within %ss; log:\n%s" % (timeout, self.log()))

    def stop(self, timeout=None):
        """SIGTERM, then the exit status must be 0 and valgrind must have said nothing."""
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout or 30 * SLOW)
        self.assert_clean_exit(rc)

    def assert_clean_exit(self, rc):
        log = self.log()
        assert rc == 0, "serve exited %d; log:\n%s" % (rc, log)
        assert "event=stopped" in log, log
        assert "event=worker_died" not in log, log
        assert "event=admin_died" not in log, log
        for report in SANITIZER_REPORTS:
            assert report not in log, "sanitizer report:\n" + log
        if VALGRIND:
            assert not re.search(r"^==\d+==", log, re.M), "valgrind reported:\n" + log

    def children(self):
        pid = self.proc.pid
        kids = []
        try:
            text = Path("/proc/%d/task/%d/children" % (pid, pid)).read_text()
            kids = [int(x) for x in text.split()]
        except OSError:
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        stat = Path("/proc/%s/stat" % d).read_text()
                    except OSError:
                        continue
                    if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
        return kids

    def kill(self):
        """Finalizer: whatever happened, no process of ours is left behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = self.children()
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10 * SLOW)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            for pid in [self.proc.pid] + kids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)


# ---- TLS client ----------------------------------------------------------------


def client_ctx(minv=None, maxv=None, alpn=None, cert=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minv is not None:
        ctx.minimum_version = minv
    if maxv is not None:
        ctx.maximum_version = maxv
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return ctx


class TLSConn:
    """A TLS client over a memory BIO, so the test controls every byte on the socket:
    it can half-close with close_notify or with a bare TCP FIN and keep reading."""

    def __init__(self, host, port, sni=None, ctx=None, session=None, timeout=10, handshake=True):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout * SLOW)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.ctx = ctx or client_ctx()
        self.obj = self.ctx.wrap_bio(self.inc, self.out, server_side=False, server_hostname=sni,
                                     session=session)
        self.eof = None  # "close_notify" or "tcp" once the server's side ended
        if handshake:
            try:
                self.handshake()
            except BaseException:
                self.close()
                raise

    # plumbing
    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self):
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if data:
            self.inc.write(data)
        else:
            self.inc.write_eof()
        return bool(data)

    def _io(self, fn, *args):
        while True:
            try:
                r = fn(*args)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()

    def local_port(self):
        return self.sock.getsockname()[1]

    def handshake(self):
        self._io(self.obj.do_handshake)

    @property
    def peer_der(self):
        return self.obj.getpeercert(binary_form=True)

    @property
    def peer_thumb(self):
        der = self.peer_der
        return thumb_of_der(der) if der else None

    def version(self):
        return self.obj.version()

    def alpn(self):
        return self.obj.selected_alpn_protocol()

    def send(self, data):
        view = memoryview(data)
        for i in range(0, len(view), 65536):
            self.obj.write(view[i : i + 65536])
            self._flush()

    def recv(self, n=65536):
        """Some bytes, or b'' at the end (self.eof says how it ended)."""
        if self.eof:
            return b""
        try:
            data = self._io(self.obj.read, n)
            if not data:
                self.eof = "close_notify"
            return data
        except ssl.SSLZeroReturnError:
            self.eof = "close_notify"
        except (ssl.SSLEOFError, ssl.SSLSyscallError):
            self.eof = "tcp"
        return b""

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            d = self.recv(n - len(buf))
            if not d:
                raise AssertionError("connection ended after %d of %d bytes" % (len(buf), n))
            buf += d
        return bytes(buf)

    def recv_all(self):
        buf = bytearray()
        while True:
            d = self.recv()
            if not d:
                return bytes(buf)
            buf += d

    def echo(self, data):
        self.send(data)
        return self.recv_exact(len(data))

    def close_notify(self):
        """Sends close_notify (our half of a TLS shutdown); reading still works."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def send_and_close_notify(self, data):
        """Sends data and close_notify in one write, so they reach the server together."""
        view = memoryview(data)
        for i in range(0, len(view), 16384):
            self.obj.write(view[i : i + 16384])
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._flush()

    def shut_tcp(self):
        """Half-closes the TCP connection without close_notify."""
        self.sock.shutdown(socket.SHUT_WR)

    def closed_by_server(self, timeout):
        """True if the server ends the connection (EOF, reset, or alert) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.recv():
                    return True
        except socket.timeout:
            return False
        except (ssl.SSLError, OSError):
            return True

    def transfer(self, payload, expect_len, timeout):
        """Sends payload while reading what comes back (needed for an echo, with back-pressure)."""
        self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        sent = 0
        outbuf = bytearray()
        got = bytearray()
        view = memoryview(payload)
        try:
            while len(got) < expect_len:
                if time.monotonic() > deadline:
                    raise AssertionError("transfer: %d of %d bytes sent, %d of %d received in %ss"
                                         % (sent, len(payload), len(got), expect_len, timeout))
                while sent < len(payload) and len(outbuf) < 262144:
                    chunk = view[sent : sent + 65536]
                    self.obj.write(chunk)
                    sent += len(chunk)
                    outbuf += self.out.read()
                r, w, _ = select.select([self.sock], [self.sock] if outbuf else [], [], 1.0)
                if w:
                    try:
                        n = self.sock.send(outbuf[:262144])
                        del outbuf[:n]
                    except BlockingIOError:
                        pass
                if r:
                    try:
                        data = self.sock.recv(262144)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise AssertionError("server closed after %d bytes received" % len(got))
                    self.inc.write(data)
                    while True:
                        try:
                            d = self.obj.read(262144)
                        except ssl.SSLWantReadError:
                            break
                        if not d:
                            break
                        got += d
                    outbuf += self.out.read()
            while outbuf:
                select.select([], [self.sock], [], 1.0)
                try:
                    n = self.sock.send(outbuf)
                    del outbuf[:n]
                except BlockingIOError:
                    pass
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(10 * SLOW)
        return bytes(got)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def handshake_error(host, port, sni=None, ctx=None):
    """Attempts a handshake that must fail; returns the SSLError (reason: e.g. TLSV1_ALERT_INTERNAL_ERROR)."""
    try:
        c = TLSConn(host, port, sni=sni, ctx=ctx)
    except ssl.SSLError as e:
        return e
    thumb = c.peer_thumb
    c.close()
    raise AssertionError("handshake to %s:%d sni=%s succeeded with certificate %s" % (host, port, sni, thumb))


def served_thumb(host, port, sni=None, ctx=None):
    with TLSConn(host, port, sni=sni, ctx=ctx) as c:
        return c.peer_thumb


def try_thumb(host, port, sni=None):
    """The thumbprint served, or the failure as text (for polling live changes)."""
    try:
        return served_thumb(host, port, sni)
    except ssl.SSLError as e:
        return "alert:%s" % e.reason
    except OSError as e:
        return "oserror:%s" % e.__class__.__name__


def s_client(host, port, sni=None, extra=(), timeout=20):
    """openssl s_client output (stdout+stderr) for one handshake, sending nothing."""
    cmd = ["openssl", "s_client", "-connect", "%s:%d" % (("[%s]" % host) if ":" in host else host, port)]
    cmd += ["-servername", sni] if sni else ["-noservername"]
    cmd += list(extra)
    p = subprocess.run(cmd, input=b"", capture_output=True, timeout=timeout * SLOW)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def connect_refused(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the SYN was queued on the listener as it closed; nothing accepts it.
        return True
    finally:
        s.close()
    return False


# ---- test backends --------------------------------------------------------------


class Backend:
    """A TCP server in a thread of the test process; handler(conn, backend) runs per connection."""

    def __init__(self, handler, host="127.0.0.1"):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.stopped = threading.Event()
        self.release = threading.Event()  # for handlers that wait
        self.records = []
        self.cond = threading.Condition()
        self.conns = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self.cond:
                self.conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn, self)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def record(self, item):
        with self.cond:
            self.records.append(item)
            self.cond.notify_all()

    def wait_records(self, n, timeout):
        with self.cond:
            self.cond.wait_for(lambda: len(self.records) >= n, timeout * SLOW)
            assert len(self.records) >= n, "backend got %d of %d records" % (len(self.records), n)
            return list(self.records)

    def close(self):
        self.stopped.set()
        self.release.set()
        self.thread.join(5)
        self.sock.close()
        with self.cond:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def echo_handler(conn, be):
    while True:
        data = conn.recv(262144)
        if not data:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(data)


def reply_after_eof_handler(conn, be):
    """Reads to end of input, then answers with what it got: proves half-close."""
    h = hashlib.sha256()
    n = 0
    while True:
        data = conn.recv(262144)
        if not data:
            break
        h.update(data)
        n += len(data)
    conn.sendall(b"got %d bytes sha256=%s\n" % (n, h.hexdigest().encode()))
    be.record(n)


def http_handler(conn, be):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
    be.record(buf.split(b"\r\n", 1)[0].decode())
    body = b"hello from backend %d\n" % be.port
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (len(body), body))


def never_read_handler(conn, be):
    """Reads nothing until be.release is set, then counts everything to the end."""
    be.release.wait()
    n = 0
    while True:
        data = conn.recv(262144)
        if not data:
            break
        n += len(data)
    be.record(n)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        d = conn.recv(n - len(buf))
        if not d:
            raise EOFError("eof after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_proxy_header(conn):
    """Reads a PROXY v1 line or v2 header off conn and parses it."""
    first = recv_exact(conn, 12)
    if first == V2_SIG:
        rest = recv_exact(conn, 4)
        length = struct.unpack(">H", rest[2:4])[0]
        body = recv_exact(conn, length)
        return parse_proxy_v2(first + rest + body)
    line = first
    while not line.endswith(b"\r\n"):
        line += recv_exact(conn, 1)
        assert len(line) <= 107, line
    return parse_proxy_v1(line)


def parse_proxy_v1(line):
    parts = line.decode("ascii").rstrip("\r\n").split(" ")
    assert parts[0] == "PROXY", line
    if parts[1] == "UNKNOWN":
        return {"version": 1, "proto": "UNKNOWN", "raw": line}
    return {
        "version": 1,
        "raw": line,
        "proto": parts[1],
        "src": parts[2],
        "dst": parts[3],
        "sport": int(parts[4]),
        "dport": int(parts[5]),
    }


def parse_tlvs(data):
    out = []
    i = 0
    while i < len(data):
        assert i + 3 <= len(data), "truncated TLV at %d" % i
        t = data[i]
        n = struct.unpack(">H", data[i + 1 : i + 3])[0]
        assert i + 3 + n <= len(data), "TLV 0x%02x overruns" % t
        out.append((t, data[i + 3 : i + 3 + n]))
        i += 3 + n
    return out


def parse_proxy_v2(hdr):
    assert hdr[:12] == V2_SIG
    ver_cmd, fam = hdr[12], hdr[13]
    length = struct.unpack(">H", hdr[14:16])[0]
    body = hdr[16:]
    assert len(body) == length
    res = {"version": 2, "ver_cmd": ver_cmd, "fam": fam, "length": length}
    if fam == 0x11:
        res["src"] = str(ipaddress.IPv4Address(body[0:4]))
        res["dst"] = str(ipaddress.IPv4Address(body[4:8]))
        res["sport"], res["dport"] = struct.unpack(">HH", body[8:12])
        off = 12
    elif fam == 0x21:
        res["src"] = str(ipaddress.IPv6Address(body[0:16]))
        res["dst"] = str(ipaddress.IPv6Address(body[16:32]))
        res["sport"], res["dport"] = struct.unpack(">HH", body[32:36])
        off = 36
    else:
        off = 0
    res["tlvs"] = parse_tlvs(body[off:])
    tl = dict(res["tlvs"])
    if 0x20 in tl:
        v = tl[0x20]
        res["ssl_client"] = v[0]
        res["ssl_verify"] = struct.unpack(">I", v[1:5])[0]
        res["ssl_sub"] = dict(parse_tlvs(v[5:]))
    return res


def proxy_handler(conn, be):
    """Records the PROXY header it receives, then echoes."""
    be.record(read_proxy_header(conn))
    echo_handler(conn, be)
