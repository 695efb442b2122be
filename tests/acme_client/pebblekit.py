"""Pebble and pebble-challtestsrv (Debian's packages) on loopback, for the ACME suites:
tests/acme_client (the client library through its driver) and tests/acme (serve's manager
end to end). Plain classes, no pytest: each suite's conftest makes its fixtures of them.

Every process is started here by PID on free loopback ports and stopped by its PID.
Readiness is polled with a deadline, never slept for.
"""

import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
EAB_KID = "kid-1"
EAB_HMAC = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def tools_missing():
    """The Pebble programs that are not installed (empty when both are)."""
    return [t for t in (PEBBLE, CHALLTESTSRV) if not os.access(t, os.X_OK)]


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
    """SIGTERM to proc (by its PID), then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class TLSFiles:
    """A private root and a server certificate for 127.0.0.1/localhost signed by it: the
    TLS of Pebble's API. cafile is world-readable (a service user reads it)."""

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
        os.chmod(self.cafile, 0o644)
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(self.key, 0o600)

    def context(self):
        """A client context that trusts this root (for Pebble's management interface)."""
        return ssl.create_default_context(cafile=str(self.cafile))


class ChallTestSrv:
    """pebble-challtestsrv with the mock DNS server (every name answers defaultIPv4,
    127.0.0.1; no AAAA), and its own TLS-ALPN-01 server only when tlsalpn is set."""

    def __init__(self, folder, tlsalpn=True):
        self.mgmt = free_port()
        self.dns = free_udp_tcp_port()
        self.tlsalpn = free_port() if tlsalpn else None
        self.log = open(folder / "challtestsrv.log", "wb")
        self.proc = subprocess.Popen(
            [CHALLTESTSRV, "-management", "127.0.0.1:%d" % self.mgmt,
             "-dns01", "127.0.0.1:%d" % self.dns,
             "-tlsalpn01", "127.0.0.1:%d" % self.tlsalpn if tlsalpn else "",
             "-http01", "", "-https01", "", "-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: tcp_open(self.mgmt) and (not tlsalpn or tcp_open(self.tlsalpn)),
                   "challtestsrv", self.proc)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.mgmt

    def post(self, path, body):
        """POSTs body (JSON) to the management API; raises unless it answers 200."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200, (path, r.status)

    def set_servfail(self, host):
        """The mock DNS answers SERVFAIL for every query about host."""
        self.post("/set-servfail", {"host": host})

    def clear_servfail(self, host):
        self.post("/clear-servfail", {"host": host})

    def add_a(self, host, addresses):
        self.post("/add-a", {"host": host, "addresses": list(addresses)})

    def close(self):
        stop(self.proc)
        self.log.close()


class Pebble:
    """One Pebble, PEBBLE_VA_NOSLEEP=1 and its default random nonce rejection left on.
    tls_port: where its VA makes TLS-ALPN-01 connections (default: challtestsrv's own
    TLS-ALPN-01 server). stop() and start() again keep the ports (Pebble keeps nothing:
    accounts, orders and its CA certificates are new after a start)."""

    def __init__(self, folder, tls, challsrv, eab=False, env=None, tls_port=None):
        self.folder = folder
        self.tls = tls
        self.port = free_port()
        self.mgmt_port = free_port()
        self.tls_port = tls_port if tls_port is not None else challsrv.tlsalpn
        folder.mkdir(parents=True, exist_ok=True)
        conf = {"pebble": {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
            "certificate": str(tls.cert), "privateKey": str(tls.key),
            "httpPort": free_port(), "tlsPort": self.tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": eab}}
        if eab:
            conf["pebble"]["externalAccountMACKeys"] = {EAB_KID: EAB_HMAC}
        (folder / "pebble.json").write_text(json.dumps(conf))
        self.cmd = [PEBBLE, "-config", str(folder / "pebble.json"),
                    "-dnsserver", "127.0.0.1:%d" % challsrv.dns]
        self.env = dict(os.environ, PEBBLE_VA_NOSLEEP="1")
        self.env.pop("PEBBLE_WFE_NONCEREJECT", None)  # keep Pebble's 5% badNonce default
        self.env.update(env or {})
        self.log_path = folder / "pebble.log"
        self.log = None
        self.proc = None
        self.starts = 0
        self.start()

    def start(self):
        """Starts Pebble (again), on the same ports, and waits until it answers."""
        assert self.proc is None or self.proc.poll() is not None, "pebble is running"
        self.starts += 1
        self.log = open(self.log_path, "ab")
        self.log.write(b"---- start %d ----\n" % self.starts)
        self.log.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=str(self.folder))
        wait_until(lambda: tcp_open(self.port) and tcp_open(self.mgmt_port), "pebble", self.proc)

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def log_text(self):
        """This run's log (since the last start)."""
        text = self.log_path.read_text(errors="replace")
        return text[text.rfind("---- start %d ----" % self.starts):]

    def orders(self):
        """How many orders this run of Pebble holds ("There are now N orders in the db")."""
        counts = re.findall(r"There are now (\d+) orders in the db", self.log_text())
        return int(counts[-1]) if counts else 0

    def management(self, path):
        """GET on the management interface (https, Pebble's API certificate)."""
        url = "https://127.0.0.1:%d%s" % (self.mgmt_port, path)
        with urllib.request.urlopen(url, context=self.tls.context(), timeout=10) as r:
            return r.read()

    def intermediate(self):
        """The intermediate that signs this run's certificates."""
        return x509.load_pem_x509_certificate(self.management("/intermediates/0"))

    def root(self):
        return x509.load_pem_x509_certificate(self.management("/roots/0"))

    def stop(self):
        stop(self.proc)
        if self.log is not None:
            self.log.close()
            self.log = None

    close = stop
