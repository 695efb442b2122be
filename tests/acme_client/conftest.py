"""Fixtures for the ACME client suite: a real Pebble and pebble-challtestsrv on loopback,
and a scripted fake CA, driven through the test-only C driver cb_acme_probe.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/acme_client

Environment:
  CERTBIND_BIN    the certbind binary; cb_acme_probe is looked up next to it
  CB_ACME_PROBE   the driver itself (default: build/cb_acme_probe in the repository)

Every process is started here, by PID, on free loopback ports, and stopped here.
Readiness is polled with a deadline, never slept for.
"""

import base64
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
_bin = os.environ.get("CERTBIND_BIN")
PROBE = os.environ.get("CB_ACME_PROBE") or (
    str(Path(_bin).parent / "cb_acme_probe") if _bin else str(REPO / "build" / "cb_acme_probe"))
# A guard against a hung driver, not a timing assertion.
TIMEOUT = 300
PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def pytest_report_header(config):
    return "cb_acme_probe: %s" % PROBE


@pytest.fixture(scope="session", autouse=True)
def _tools_exist():
    if not os.access(PROBE, os.X_OK):
        pytest.exit("cb_acme_probe %s not found; build first or set CB_ACME_PROBE" % PROBE, 2)
    for tool in (PEBBLE, CHALLTESTSRV):
        if not os.access(tool, os.X_OK):
            pytest.skip("%s is not installed" % tool)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_tcp_port():
    """A port free for both TCP and UDP (the mock DNS server listens on both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def wait_until(check, what, proc=None, deadline_s=30.0):
    """Polls check() until it is true; fails when proc dies or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before it was ready" % (what, proc.returncode))
        if check():
            return
        time.sleep(0.05)  # polling interval, not synchronisation
    raise RuntimeError("%s not ready within %s s" % (what, deadline_s))


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-acme-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class TLSFiles:
    """A private root and a server certificate for 127.0.0.1/localhost signed by it."""

    def __init__(self, folder):
        now = datetime.datetime.now(datetime.timezone.utc)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certbind test root")])
        root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(root_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(root_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .sign(root_key, hashes.SHA256()))
        self.cafile = folder / "ca.pem"
        self.cert = folder / "server.pem"
        self.key = folder / "server.key"
        self.cafile.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(self.key, 0o600)


@pytest.fixture(scope="session")
def tls(workdir):
    d = workdir / "tls"
    d.mkdir()
    return TLSFiles(d)


class ChallTestSrv:
    """pebble-challtestsrv with only the mock DNS and TLS-ALPN-01 servers."""

    def __init__(self, folder):
        self.mgmt = free_port()
        self.dns = free_udp_tcp_port()
        self.tlsalpn = free_port()
        self.log = open(folder / "challtestsrv.log", "wb")
        self.proc = subprocess.Popen(
            [CHALLTESTSRV, "-management", "127.0.0.1:%d" % self.mgmt,
             "-dns01", "127.0.0.1:%d" % self.dns, "-tlsalpn01", "127.0.0.1:%d" % self.tlsalpn,
             "-http01", "", "-https01", "", "-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: tcp_open(self.mgmt) and tcp_open(self.tlsalpn), "challtestsrv",
                   self.proc)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.mgmt

    def close(self):
        stop(self.proc)
        self.log.close()


@pytest.fixture(scope="session")
def challsrv(workdir):
    srv = ChallTestSrv(workdir)
    yield srv
    srv.close()


class Pebble:
    def __init__(self, folder, tls, challsrv, eab=False, env=None):
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        conf = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % free_port(),
            "certificate": str(tls.cert), "privateKey": str(tls.key),
            "httpPort": free_port(), "tlsPort": challsrv.tlsalpn,
            "ocspResponderURL": "", "externalAccountBindingRequired": eab}}
        if eab:
            conf["pebble"]["externalAccountMACKeys"] = {EAB_KID: EAB_HMAC}
        (folder / "pebble.json").write_text(json.dumps(conf))
        self.log_path = folder / "pebble.log"
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        full_env.pop("PEBBLE_WFE_NONCEREJECT", None)  # keep Pebble's 5% badNonce default
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [PEBBLE, "-config", str(folder / "pebble.json"),
             "-dnsserver", "127.0.0.1:%d" % challsrv.dns],
            stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=str(folder))
        wait_until(lambda: tcp_open(self.port), "pebble", self.proc)

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def close(self):
        stop(self.proc)
        self.log.close()


@pytest.fixture(scope="session")
def pebble(workdir, tls, challsrv):
    p = Pebble(workdir / "pebble", tls, challsrv)
    yield p
    p.close()


@pytest.fixture
def pebble_factory(workdir, tls, challsrv):
    made = []

    def make(name, **kw):
        p = Pebble(workdir / name, tls, challsrv, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


class ProbeResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.values = {}
        self.lists = {}
        for line in proc.stdout.splitlines():
            k, _, v = line.partition("=")
            self.values[k] = v
            self.lists.setdefault(k, []).append(v)

    def __getitem__(self, k):
        return self.values[k]

    def get(self, k, default=None):
        return self.values.get(k, default)

    def __repr__(self):
        return "exit %s\nstdout:\n%s\nstderr:\n%s" % (self.returncode, self.stdout, self.stderr)


def run_probe(*args, env=None, prefix=None):
    cmd = (prefix or []) + [PROBE] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, **(env or {})))
    return ProbeResult(proc)


@pytest.fixture
def probe(tls, challsrv):
    """Runs the driver against a directory with the test root as cafile."""

    def run(directory, mode, *names, opts=(), env=None, prefix=None):
        args = ["--directory", directory, "--cafile", tls.cafile, "--challsrv", challsrv.url,
                "--timeout", "20"]
        args += list(opts)
        return run_probe(*args, mode, *names, env=env, prefix=prefix)

    return run


# ---- a scripted fake CA (https on loopback) ----

def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class FakeCA:
    """A tiny https server that answers as scripted: `routes` maps a path to a function
    (handler, body) -> (status, headers, body). It hands out nonces and records the
    nonces and URLs of signed requests."""

    def __init__(self, tls):
        self.routes = {}
        self.requests = []
        self.nonces_issued = []
        self._n = 0
        ca = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ca.requests.append((method, self.path, body, dict(self.headers)))
                route = ca.routes.get(self.path)
                if route is None:
                    status, headers, out = 404, {}, b"not found"
                else:
                    status, headers, out = route(method, body)
                if isinstance(out, str):
                    out = out.encode()
                self.send_response(status)
                self.send_header("Replay-Nonce", ca.new_nonce())
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(out)

            def do_GET(self):
                self._answer("GET")

            def do_HEAD(self):
                self._answer("HEAD")

            def do_POST(self):
                self._answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def new_nonce(self):
        self._n += 1
        n = base64.urlsafe_b64encode(b"nonce-%06d" % self._n).rstrip(b"=").decode()
        self.nonces_issued.append(n)
        return n

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def directory(self, **extra):
        d = {"newNonce": self.url("/nonce"), "newAccount": self.url("/acct"),
             "newOrder": self.url("/order")}
        d.update(extra)
        return json.dumps(d)

    @staticmethod
    def protected(body):
        return json.loads(b64d(json.loads(body)["protected"]))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ca(tls):
    ca = FakeCA(tls)
    yield ca
    ca.close()
