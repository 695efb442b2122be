"""Helpers for the `serve --admin` suite: HTTP to the admin port, the Prometheus text
format, promtool, certificates with a chosen lifetime, and the admin process's PID.

The server, the TLS clients and the backends come from the e2e suite's cbe2e module.
"""

import datetime
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import cbe2e

REPO = cbe2e.REPO
# Waits are guards against a hang, never timing assertions.
SANITIZED = False
try:
    with open(cbe2e.BIN, "rb") as _f:
        SANITIZED = b"__asan_init" in _f.read()
except OSError:
    pass
SLOW = cbe2e.SLOW * (3 if SANITIZED else 1)
WAIT = 20 * SLOW


def admin_addr(host="127.0.0.1"):
    """An --admin value on a free port: ("127.0.0.1:PORT", PORT)."""
    port = cbe2e.free_port()
    return ("[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)), port


# ---- HTTP ------------------------------------------------------------------------------------


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def request(addr, path, method="GET", body=None, timeout=None):
    """One HTTP/1.1 request to the admin endpoint addr ("127.0.0.1:9110" or "[::1]:9110")."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout or 10 * SLOW)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def get_ok(addr, path):
    r = request(addr, path)
    assert r.status == 200, (path, r.status, r.body[:500])
    return r


def status(addr):
    return get_ok(addr, "/status.json").json()


# ---- the Prometheus text format ------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


class Metrics:
    """A parsed exposition: samples by (name, labels) and the TYPE of each family."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# TYPE "):
                _, _, name, typ = line.split(" ", 3)
                self.types[name] = typ
                continue
            if line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            labels = {}
            rest = m.group(2) or ""
            pos = 0
            while pos < len(rest):
                lm = _LABEL.match(rest, pos)
                assert lm, "bad labels in %r" % line
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
            key = (m.group(1), tuple(sorted(labels.items())))
            assert key not in self.samples, "duplicate series %r" % line
            self.samples[key] = float(m.group(3))

    def get(self, name, **labels):
        """The value of the series with exactly these labels (AssertionError if absent)."""
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        assert key in self.samples, "no series %s%r in:\n%s" % (name, labels, self.text)
        return self.samples[key]

    def series(self, name):
        """[(labels dict, value)] of every series of a family."""
        return [(dict(k[1]), v) for k, v in self.samples.items() if k[0] == name]

    def binding(self, name, key, **labels):
        port = key.rsplit(":", 1)[1] if not key.startswith("ccs=") else key.split("=", 1)[1]
        return self.get(name, binding=key, port=port, **labels)

    def failures(self, key, reason):
        if key == "":
            return self.get("certbind_handshake_failures_total", binding="", port="", reason=reason)
        return self.binding("certbind_handshake_failures_total", key, reason=reason)


def scrape(addr):
    r = get_ok(addr, "/metrics")
    return Metrics(r.text)


def poll_metrics(addr, pred, timeout=None, what="the expected metrics"):
    """Scrapes until pred(metrics) is true; returns those metrics, or fails with the last ones."""
    deadline = time.monotonic() + (timeout or WAIT)
    while True:
        m = scrape(addr)
        if pred(m):
            return m
        if time.monotonic() >= deadline:
            raise AssertionError("no %s within %ss; last scrape:\n%s" % (what, timeout or WAIT, m.text))
        time.sleep(0.1)


def promtool_check(text):
    """(exit status, output) of `promtool check metrics` reading text on stdin."""
    exe = shutil.which("promtool")
    assert exe, "promtool not found: install Debian's prometheus package (scripts/install-deps)"
    p = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60 * SLOW)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# ---- certificates ----------------------------------------------------------------------------


def make_cert_days(folder, stem, cn, names=None, days=30, rsa_bits=None):
    """A self-signed certificate valid from now (minus one day) for `days` days from now.
    The notAfter is whole seconds, so cert.not_after equals what certbind stores."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    not_after = now + datetime.timedelta(days=days)
    names = [cn] if names is None else names
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(not_after))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                            critical=False)
    cert = b.sign(key, hashes.SHA256())
    folder = Path(folder)
    cert_path, key_path = folder / (stem + ".crt"), folder / (stem + ".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    c = cbe2e.Cert(cert, key, cert_path, key_path)
    c.not_after = int(not_after.timestamp())
    c.names = list(names)
    return c


def days_left(not_after, now):
    """What the status page shows at time now: whole days left, rounded down, counted (as the
    server does) from the whole second now falls in."""
    return math.floor((not_after - int(now)) / 86400)


# ---- processes -------------------------------------------------------------------------------


def admin_pid(srv):
    """The admin process of a serve: its child named cb-admin (the last one started)."""
    workers = {w["pid"] for w in status(srv.admin)["workers"]}
    others = [p for p in srv.children() if p not in workers and _comm(p) == "cb-admin"]
    assert len(others) == 1, (srv.children(), workers, srv.log())
    return others[0]


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def socket_fds(pid):
    """How many sockets process pid holds open."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def connect_refused(addr):
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    finally:
        s.close()
    return False


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def alive(pid):
    """Whether pid runs (a zombie does not count)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
