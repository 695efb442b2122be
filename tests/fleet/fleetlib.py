"""Helpers of the fleet suite: etcd members started on loopback with temporary data folders
and free ports, certificates made with python3-cryptography, and certbind "nodes" (a state
folder each) that run commands against one etcd store.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/fleet

Environment:
  CERTBIND_BIN         the binary (default: build/certbind in the repository)
  CERTBIND_ETCD_PROBE  the src/etcd driver (default: build/cb_etcd_probe)
"""

import datetime
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
PROBE = os.environ.get("CERTBIND_ETCD_PROBE") or str(REPO / "build" / "cb_etcd_probe")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
TIMEOUT = 120  # a guard against a hung command, not a timing assertion
ERR = "certbind: error: "
WARN = "certbind: warning: "


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what, deadline=30.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class Member:
    """One etcd member (a process we started, stopped only by its PID)."""

    def __init__(self, base, name):
        self.name = name
        self.dir = Path(base) / name
        self.client = free_port()
        self.peer = free_port()
        self.proc = None
        self.log = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client

    def start(self, cluster, state="new"):
        self.log = open(self.dir.with_suffix(".log"), "ab")
        self.proc = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", str(self.dir),
             "--listen-client-urls", "http://" + self.endpoint,
             "--advertise-client-urls", "http://" + self.endpoint,
             "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer,
             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer,
             "--initial-cluster", cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", "certbind-test"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def healthy(self):
        try:
            with urllib.request.urlopen("http://%s/health" % self.endpoint, timeout=2) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None


class Etcd:
    """A cluster of n members on loopback, in a temporary folder."""

    def __init__(self, n=1):
        self.base = Path(tempfile.mkdtemp(prefix="cb-etcd-"))
        self.members = [Member(self.base, "m%d" % i) for i in range(n)]
        self.cluster = ",".join("%s=http://127.0.0.1:%d" % (m.name, m.peer)
                                for m in self.members)
        self.start()

    def start(self, state="new"):
        for m in self.members:
            m.start(self.cluster, state)
        for m in self.members:
            wait_for(m.healthy, "etcd member %s to answer /health" % m.name)

    def stop(self):
        for m in self.members:
            m.stop()

    def restart(self):
        self.stop()
        self.start(state="existing")

    def close(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def url(self, prefix):
        return "etcd://%s/%s" % (self.endpoints, prefix)

    def ctl(self, *args, check=True, member=None):
        eps = member.endpoint if member else ",".join(
            m.endpoint for m in self.members if m.proc is not None)
        p = subprocess.run([ETCDCTL, "--endpoints", eps] + list(args), capture_output=True,
                           timeout=TIMEOUT, env=dict(os.environ, ETCDCTL_API="3"))
        if check:
            assert p.returncode == 0, p.stderr.decode(errors="replace")
        return p

    def get_prefix(self, prefix):
        """{key: value bytes} under prefix, read with etcdctl's JSON output."""
        import base64
        p = self.ctl("get", "--prefix", prefix, "-w", "json")
        d = json.loads(p.stdout)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
                for kv in d.get("kvs", [])}

    def revision(self):
        p = self.ctl("endpoint", "status", "-w", "json")
        return max(int(s["Status"]["header"]["revision"]) for s in json.loads(p.stdout))

    def leader(self):
        p = self.ctl("endpoint", "status", "-w", "json")
        for s in json.loads(p.stdout):
            if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
                ep = s["Endpoint"].replace("http://", "")
                return next(m for m in self.members if m.endpoint == ep)
        raise AssertionError("no leader")


# -- certificates ---------------------------------------------------------------------------

def make_cert(names=("www.example.com",)):
    key = ec.generate_private_key(ec.SECP256R1())
    t = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(t - datetime.timedelta(days=1))
            .not_valid_after(t + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


class Files:
    """A folder of input files: certificates, keys and store keys."""

    def __init__(self, base):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)

    def cert(self, name, names):
        cert, key = make_cert(names)
        c = self.dir / (name + ".pem")
        k = self.dir / (name + ".key")
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        k.chmod(0o600)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return c, k, cert.fingerprint(hashes.SHA1()).hex().upper(), der

    def store_key(self, name="store.key", data=None):
        p = self.dir / name
        p.write_bytes(data if data is not None else os.urandom(32))
        p.chmod(0o600)
        return p


class Node:
    """One certbind state folder following the fleet store at url."""

    def __init__(self, base, url, key):
        self.state = Path(base) / "state"
        self.url = url
        self.key = key
        home = Path(base) / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
        self.env.update(HOME=str(home), XDG_STATE_HOME=str(home / "xdg"), LC_ALL="C.UTF-8")

    def argv(self, args, key=True, store=True):
        a = [BIN, "--state", str(self.state)]
        if store:
            a += ["--store", self.url]
        if key and self.key is not None:
            a += ["--store-key", str(self.key)]
        return a + [str(x) for x in args]

    def run(self, *args, key=True, store=True):
        p = subprocess.run(self.argv(args, key, store), env=self.env, capture_output=True,
                           timeout=TIMEOUT)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def ok(self, *args, **kw):
        rc, out, err = self.run(*args, **kw)
        assert rc == 0, "certbind %s: rc=%d\nstdout: %s\nstderr: %s" % (args, rc, out, err)
        assert ERR not in err, err
        return out

    def fails(self, status, *args, **kw):
        """A command that must fail with `status`, one error line; returns its message."""
        rc, out, err = self.run(*args, **kw)
        assert rc == status, "certbind %s: rc=%d, want %d\nstdout: %s\nstderr: %s" % (
            args, rc, status, out, err)
        lines = [l for l in err.splitlines() if l.startswith(ERR)]
        assert len(lines) == 1, err
        return lines[0][len(ERR):]

    def json(self, *args):
        return json.loads(self.ok(*args, "--json"))

    def rows(self):
        """The replicated tables' rows (node paths left out), for comparing two replicas."""
        db = sqlite3.connect("file:%s?mode=ro" % (self.state / "certbind.db"), uri=True)
        try:
            out = {}
            for table, cols in (("bindings", "*"), ("acme_account",
                                                    "directory, email, agreetos, keytype"),
                                ("acme_state", "*"), ("challenges", "name, cert_pem, expires"),
                                ("certs", "thumbprint, sha256, subject, not_after, acme"),
                                ("cert_names", "*")):
                out[table] = sorted(db.execute("SELECT %s FROM %s" % (cols, table)).fetchall())
            out["meta"] = sorted(r for r in db.execute("SELECT name, value FROM meta")
                                 if r[0] not in ("generation", "changed_at", "user"))
            return out
        finally:
            db.close()

    def dump(self):
        """Every row of the replica's database (for 'nothing changed')."""
        db = sqlite3.connect("file:%s?mode=ro" % (self.state / "certbind.db"), uri=True)
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            return {t: sorted(db.execute("SELECT * FROM %s" % t).fetchall()) for t in tables}
        finally:
            db.close()
