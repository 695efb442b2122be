"""Helpers for the renewal suite: certificates with controlled dates, one state
folder per test, the store's dump, and a `certbind serve` started and stopped by PID.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/deploy
CERTBIND_BIN names the binary (default: build/certbind in the repository).
"""

import datetime
import ipaddress
import json
import os
import pwd
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
HOOK = REPO / "contrib" / "certbot-deploy-hook"
TIMEOUT = 120  # a guard against a hung command, not a timing assertion
SERVICE_USER = "certbind"
NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def days_ago(n):
    return NOW - datetime.timedelta(days=n)


# ---- certificates ---------------------------------------------------------


class Cert:
    """A certificate and its key, as PEM, with the thumbprint certbind shows."""

    def __init__(self, cert, key, chain=()):
        self.cert = cert
        self.key = key
        self.chain = list(chain)
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
        self.pem = cert.public_bytes(serialization.Encoding.PEM) + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        self.key_pem = key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())

    def write(self, folder, stem):
        """Writes STEM.pem and STEM.key into folder (0755); returns both paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
        cert, key = folder / (stem + ".pem"), folder / (stem + ".key")
        write_file(cert, self.pem)
        write_file(key, self.key_pem, key=True)
        return cert, key


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(names, not_before=None, key=None, ips=(), days=90, issuer=None):
    """A certificate for DNS names (the first is the CN) and IP addresses, valid from
    not_before (default 10 days ago) for `days`. Self-signed unless issuer=(cert, key)."""
    key = key or new_key()
    not_before = not_before or days_ago(10)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "no names")])
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer[0].subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_before + datetime.timedelta(days=days)))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signer = issuer[1] if issuer else key
    # Ed25519 signs without a separate digest
    cert = b.sign(signer, None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return Cert(cert, key, chain=[issuer[0]] if issuer else ())


def make_ca(name="Test Renewal CA"):
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(days_ago(30)).not_valid_after(days_ago(30) + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def protect_key(path):
    """certbind refuses keys others can read: 0600, or as root 0640 with the service
    user's group, so `serve` (which runs as that user) can read a linked key."""
    if os.geteuid() == 0:
        ensure_service_user()
        os.chown(path, 0, pwd.getpwnam(SERVICE_USER).pw_gid)
        os.chmod(path, 0o640)
    else:
        os.chmod(path, 0o600)


def write_file(path, data, key=False):
    """Rewrites a file in place (same inode), as an editor or `cat >` does."""
    with open(path, "wb") as f:
        if key:
            protect_key(path)
        else:
            os.chmod(path, 0o644)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def replace_file(path, data, key=False):
    """Replaces a file atomically (write a temporary, rename over), as most tools do."""
    tmp = Path(str(path) + ".tmp")
    write_file(tmp, data, key)
    os.replace(tmp, path)


def der_thumb(der):
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA1()).hex().upper()


# ---- processes ------------------------------------------------------------


def ensure_service_user():
    """As root, serve needs a service user: create the system user certbind if missing."""
    if subprocess.run(["id", SERVICE_USER], capture_output=True).returncode != 0:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", SERVICE_USER], capture_output=True)
        # useradd fails when another test file's process (ctest runs them side by side) made
        # the user meanwhile: only a user that is still missing is an error.
        if r.returncode != 0 and subprocess.run(["id", SERVICE_USER],
                                                capture_output=True).returncode != 0:
            raise AssertionError("useradd %s: %s" % (SERVICE_USER, r.stderr.decode()))


def free_port():
    """A TCP port free on every address (serve listens on [::] for SNI bindings)."""
    fam = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    for _ in range(50):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", 0))
        except OSError:
            fam = socket.AF_INET
            continue
        port = s.getsockname()[1]
        s.close()
        return port
    raise RuntimeError("no free port")


class Env:
    """One test's folder (mkdtemp, 0755, so the service user can walk it) with its state."""

    def __init__(self, base):
        self.base = Path(base)
        self.state = self.base / "state"
        self.home = self.base / "home"
        self.home.mkdir()
        self.db = self.state / "certbind.db"
        self.serves = []

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND")}
        env.update(HOME=str(self.home), XDG_STATE_HOME=str(self.home / "xdg"), LC_ALL="C.UTF-8")
        env.update(extra)
        return env

    def run(self, *args, env=None):
        """certbind --state STATE ARGS…; returns CompletedProcess (text)."""
        return subprocess.run([BIN, "--state", str(self.state)] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              env=env or self.env())

    def ok(self, *args):
        r = self.run(*args)
        assert r.returncode == 0, "certbind %s: exit %d\n%s%s" % (
            " ".join(map(str, args)), r.returncode, r.stdout, r.stderr)
        return r

    def json(self, *args):
        return json.loads(self.ok(*args, "--json").stdout)

    # store helpers

    def add_cert(self, cert, stem=None, link=False, folder=None):
        """Imports a Cert (written under base/in, or folder); returns its thumbprint."""
        stem = stem or cert.thumb[:12]
        c, k = cert.write(folder or (self.base / "in"), stem)
        r = self.ok("add", "cert", c, "key=%s" % k, *(["link=yes"] if link else []))
        assert r.stdout.strip() == cert.thumb
        return cert.thumb

    def bind(self, key, cert, *extra):
        thumb = cert.thumb if isinstance(cert, Cert) else cert
        self.ok("add", "sslcert", key, "certhash=" + thumb, *extra)

    def bindings(self):
        """{binding key: certhash}"""
        return {b["key"]: b["certhash"] for b in self.json("show", "sslcert")["bindings"]}

    def certs(self):
        """{thumbprint: show-cert record}"""
        return {c["thumbprint"]: c for c in self.json("show", "cert")["certs"]}

    def dump(self):
        """The store's whole content, as `sqlite3 certbind.db .dump` prints it (with the schema
        version), read in this process: snapshots run around every deploy."""
        if not self.db.exists():
            return None  # (opening it here would create it)
        con = sqlite3.connect(str(self.db), timeout=TIMEOUT)
        try:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            return "PRAGMA user_version=%d;\n%s" % (version, "\n".join(con.iterdump()))
        finally:
            con.close()

    def files(self):
        """The certificate and key files the store keeps: {relative path: bytes}."""
        out = {}
        for sub in ("certs", "keys"):
            d = self.state / sub
            if d.is_dir():
                for p in sorted(d.iterdir()):
                    out["%s/%s" % (sub, p.name)] = p.read_bytes()
        return out

    def snapshot(self):
        return self.dump(), self.files()

    def deploy(self, cert, *opts, stem=None, json_out=False):
        """certbind deploy for a Cert written under base/new; returns CompletedProcess."""
        c, k = cert.write(self.base / "new", stem or cert.thumb[:12])
        return self.run("deploy", c, "key=%s" % k, *opts, *(["--json"] if json_out else []))

    def serve(self, workers=2):
        """Starts serve (as the service user when root) and waits for event=ready."""
        if os.geteuid() == 0:
            ensure_service_user()
            self.ok("set", "user=" + SERVICE_USER)
        s = Serve(self, workers)
        self.serves.append(s)
        return s

    def close(self):
        for s in self.serves:
            s.stop()


class Serve:
    """certbind serve, stopped by its own PID; stderr is collected line by line."""

    def __init__(self, env, workers):
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [BIN, "--state", str(env.state), "serve", "--workers", str(workers), "--grace", "2"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, env=env.env())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            self.wait_for("event=ready", 20)
        except AssertionError:
            self.stop()
            raise

    def _read(self):
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def wait_for(self, text, timeout, start=0):
        """Waits until a log line (from index start) contains text; returns it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError("serve never logged %r; log:\n%s" % (
                        text, "\n".join(self.lines)))
                self.cond.wait(min(left, 0.1))

    def mark(self):
        with self.cond:
            return len(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)


# ---- TLS clients ----------------------------------------------------------


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(port, sni, host="127.0.0.1", timeout=5):
    """A TLS connection to host:port with SNI; returns the SSLSocket."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        return client_context().wrap_socket(sock, server_hostname=sni)
    except BaseException:
        sock.close()
        raise


def served(port, sni, host="127.0.0.1"):
    """The thumbprint of the certificate a fresh full handshake gets."""
    with connect(port, sni, host) as s:
        return der_thumb(s.getpeercert(binary_form=True))


def wait_served(port, sni, thumb, timeout=3.0, stable=8):
    """Polls fresh handshakes until `stable` in a row get thumb (so every worker has
    switched, not just one), within timeout; returns the seconds until the first."""
    t0 = time.monotonic()
    first, run, last = None, 0, None
    while True:
        last = served(port, sni)
        if last == thumb:
            first = time.monotonic() - t0 if first is None else first
            run += 1
            if run >= stable:
                return first
        else:
            run = 0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("after %.1f s %s:%d serves %s, not %s (%d in a row)" % (
                timeout, sni, port, last, thumb, run))
        time.sleep(0.02)


class EchoBackend:
    """A loopback TCP echo server, so a proxied connection can be shown to still work."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                try:
                    data = c.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                c.sendall(data)

    def close(self):
        self.stopping = True
        self.sock.close()


def new_env():
    base = tempfile.mkdtemp(prefix="cb-deploy-")
    os.chmod(base, 0o755)
    return Env(base)
