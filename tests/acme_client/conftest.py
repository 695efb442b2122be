"""Fixtures for the ACME client suite: a real Pebble and pebble-challtestsrv on loopback,
and a scripted fake CA, driven through the test-only C driver cb_acme_probe.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/acme_client

Environment:
  CERTBIND_BIN    the certbind binary; cb_acme_probe is looked up next to it
  CB_ACME_PROBE   the driver itself (default: build/cb_acme_probe in the repository)

Pebble and challtestsrv come from pebblekit.py (shared with tests/acme). Every process
is started by PID on free loopback ports and stopped by its PID. Readiness is polled
with a deadline, never slept for.
"""

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# Pebble and challtestsrv, shared with tests/acme (serve's manager end to end).
from pebblekit import EAB_HMAC, EAB_KID, ChallTestSrv, Pebble, TLSFiles, tools_missing  # noqa: F401

REPO = Path(__file__).resolve().parent.parent.parent
_bin = os.environ.get("CERTBIND_BIN")
PROBE = os.environ.get("CB_ACME_PROBE") or (
    str(Path(_bin).parent / "cb_acme_probe") if _bin else str(REPO / "build" / "cb_acme_probe"))
# A guard against a hung driver, not a timing assertion.
TIMEOUT = 300


def pytest_report_header(config):
    return "cb_acme_probe: %s" % PROBE


@pytest.fixture(scope="session", autouse=True)
def _tools_exist():
    if not os.access(PROBE, os.X_OK):
        pytest.exit("cb_acme_probe %s not found; build first or set CB_ACME_PROBE" % PROBE, 2)
    for tool in tools_missing():
        pytest.skip("%s is not installed" % tool)


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-acme-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tls(workdir):
    d = workdir / "tls"
    d.mkdir()
    return TLSFiles(d)


@pytest.fixture(scope="session")
def challsrv(workdir):
    srv = ChallTestSrv(workdir)
    yield srv
    srv.close()


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
