"""Shared fixtures for the certbind command-line suite.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/cli

Environment:
  CERTBIND_BIN       the binary (default: build/certbind in the repository)
  CERTBIND_VALGRIND  1: run every certbind command under valgrind (make valgrind)

Every test gets its own state folder (the `cb` fixture) and makes its own
certificates (the `certs` fixture).
"""

import datetime
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
VALGRIND = os.environ.get("CERTBIND_VALGRIND") == "1"
VALGRIND_CMD = ["valgrind", "--error-exitcode=99", "--leak-check=full", "-q"]
# A guard against a hung command, not a timing assertion.
TIMEOUT = 600 if VALGRIND else 120
ERR = "certbind: error: "
WARN = "certbind: warning: "


def pytest_report_header(config):
    return "certbind binary: %s%s" % (BIN, " (under valgrind)" if VALGRIND else "")


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN" % BIN, 2)


def base_env(home):
    """An environment that cannot reach a real state folder by accident."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
    env["HOME"] = str(home)
    env["XDG_STATE_HOME"] = str(home / "xdg-state")
    env["LC_ALL"] = "C.UTF-8"
    return env


def run_bin(args, env, input=None, native=False, cwd=None):
    """Runs certbind (under valgrind when asked, unless native); returns (rc, out, err)."""
    cmd = (VALGRIND_CMD if VALGRIND and not native else []) + [BIN] + [str(a) for a in args]
    p = subprocess.run(cmd, env=env, input=input, capture_output=True, timeout=TIMEOUT, cwd=cwd)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


class CertBind:
    """One state folder and the certbind commands run against it."""

    def __init__(self, state, home):
        self.state = Path(state)
        self.home = Path(home)
        self.db = self.state / "certbind.db"
        self._shows_of = None  # the content (see snapshot) that self._shows were printed for
        self._shows = None

    def env(self, **extra):
        env = base_env(self.home)
        env["CERTBIND_STATE"] = str(self.state)
        env.update(extra)
        return env

    def run(self, *args, state=True, env=None, input=None, native=False, cwd=None):
        """Runs certbind with --state (unless state=False); returns (rc, stdout, stderr)."""
        argv = list(args) + (["--state", self.state] if state else [])
        return run_bin(argv, env if env is not None else self.env(), input, native, cwd)

    # -- expectations ---------------------------------------------------------------

    def ok(self, *args, **kw):
        """Runs a command that must succeed without complaint; returns stdout."""
        rc, out, err = self.run(*args, **kw)
        assert rc == 0, "certbind %s: rc=%d\nstdout: %s\nstderr: %s" % (args, rc, out, err)
        assert ERR not in err, err
        return out

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, "--json", **kw))

    # What the store holds, for checking after a command. Not under valgrind: tests that
    # are about `show` call it with run/ok/json, which are.
    def certs(self):
        return self.json("show", "cert", native=True)["certs"]

    def bindings(self):
        return self.json("show", "sslcert", native=True)["bindings"]

    def binding(self, key):
        (b,) = self.json("show", "sslcert", key, native=True)["bindings"]
        return b

    def add_cert(self, c, native=False, **opts):
        """Imports a Cert made by the factory (key file beside it); returns the thumbprint.
        native: a fixture's setup, not the command under test (never under valgrind)."""
        args = ["add", "cert", c.cert_path]
        if "key" not in opts and c.key_path is not None:
            args.append("key=%s" % c.key_path)
        args += ["%s=%s" % (k.replace("_", "-"), v) for k, v in opts.items()]
        out = self.ok(*args, native=native)
        assert out == c.thumbprint + "\n"
        return c.thumbprint

    def snapshot(self):
        """Everything a command could change: the database, the files, and what show prints."""
        files = []
        if self.state.exists():
            st = self.state.lstat()
            files.append((".", stat.filemode(st.st_mode), st.st_uid, None))
            for p in sorted(self.state.rglob("*")):
                if p.name.startswith("certbind.db"):
                    continue  # the database is compared by content, below
                st = p.lstat()
                files.append((str(p.relative_to(self.state)), stat.filemode(st.st_mode),
                              st.st_uid, p.read_bytes() if p.is_file() else None))
        dump = db_dump(self.db) if self.db.exists() else None
        # What show prints is read from the database and the files alone: for the same
        # content it prints the same again, so it runs once per content (a failing command
        # leaves the content as it was, and its two snapshots cost no extra processes).
        # Observation, not the command under test: no need to pay for valgrind here.
        content = (self.state.exists(), tuple(files), dump)
        if self._shows_of != content:
            self._shows = [self.run("show", "cert", "--json", native=True)[:2],
                           self.run("show", "sslcert", "--json", native=True)[:2]]
            self._shows_of = content
        return {"exists": self.state.exists(), "files": files, "dump": dump,
                "shows": self._shows}

    def fails(self, status, *args, match=None, **kw):
        """Runs a command that must fail with exit `status`, print exactly one error line on
        stderr and nothing on stdout, and leave the store as it was. Returns the message."""
        before = self.snapshot()
        rc, out, err = self.run(*args, **kw)
        assert rc == status, "certbind %s: rc=%d, want %d\nstdout: %s\nstderr: %s" % (
            args, rc, status, out, err)
        assert_one_error(err)
        assert out == "", "a failure printed on stdout: %r" % out
        if match is not None:
            for m in [match] if isinstance(match, str) else match:
                assert m.lower() in err.lower(), "expected %r in %r" % (m, err)
        after = self.snapshot()
        assert after == before, "certbind %s (rc=%d) changed the store" % (args, rc)
        return err[len(ERR):].rstrip("\n")

    def integrity(self):
        p = subprocess.run(["sqlite3", "-batch", str(self.db), "PRAGMA integrity_check"],
                           check=True, capture_output=True, text=True, timeout=60)
        return p.stdout.strip()


def db_dump(db):
    """The database's whole content, as `sqlite3 .dump` prints it (schema and rows, with the
    schema version), read in this process: snapshots run around every failing command."""
    con = sqlite3.connect(str(db), timeout=60)
    try:
        (version,) = con.execute("PRAGMA user_version").fetchone()
        return "PRAGMA user_version=%d;\n%s" % (version, "\n".join(con.iterdump()))
    finally:
        con.close()


def each(cases, check):
    """Runs check(case) for every case and reports every case that failed, not just the
    first (one store for many cases keeps the valgrind run short). Under valgrind every
    second case runs: the plain run covers them all, and `make valgrind` stays in CTest's
    time limit."""
    failed = []
    for case in cases[::2] if VALGRIND else cases:
        try:
            check(case)
        except AssertionError as e:
            failed.append("%r: %s" % (case, " | ".join(str(e).splitlines()[:3])))
    assert not failed, "%d of %d cases failed:\n%s" % (len(failed), len(cases),
                                                      "\n".join(failed))


def assert_one_error(err):
    lines = err.splitlines()
    assert len(lines) == 1, "want exactly one line on stderr, got %r" % err
    assert lines[0].startswith(ERR), "want %r, got %r" % (ERR, lines[0])
    assert err.endswith("\n")
    assert len(lines[0]) > len(ERR) + 10, "the message says nothing: %r" % lines[0]


def warnings(err):
    return [l for l in err.splitlines() if l.startswith(WARN)]


@pytest.fixture
def cb(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return CertBind(tmp_path / "state", home)


@pytest.fixture
def run(cb):
    """run(*args) -> (rc, stdout, stderr), with this test's state folder."""
    return cb.run


@pytest.fixture
def world_tmp():
    """A temporary folder other users can traverse (pytest's tmp_path is 0700 for root)."""
    d = Path(tempfile.mkdtemp(prefix="certbind-cli-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- certificates -------------------------------------------------------------------------

class Cert:
    """A certificate and key on disk. Paths: cert_path (certificate only), key_path (key only,
    maybe encrypted), bundle_path (certificate then key, unencrypted)."""

    def __init__(self, cert, key, cert_path, key_path, bundle_path):
        self.cert = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path
        self.bundle_path = bundle_path
        self.thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
        self.sha256 = cert.fingerprint(hashes.SHA256()).hex().upper()

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password=None):
        enc = (serialization.BestAvailableEncryption(password.encode()) if password
               else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, enc)


def _utc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class CertFactory:
    def __init__(self, folder):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def path(self, name):
        return self.dir / name

    def write(self, name, data):
        p = self.dir / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p

    @staticmethod
    def new_key(key_type="ec"):
        if key_type == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        if key_type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        raise ValueError(key_type)

    def make(self, cn="www.example.com", sans=None, key_type="ec", key=None, days=90,
             not_before=None, not_after=None, issuer=None, ca=False, key_password=None,
             name=None):
        """A certificate for `cn` with DNS SANs `sans` (None: [cn]; []: no SAN extension).
        issuer: a CA Cert to sign with (None: self-signed)."""
        self.n += 1
        name = name or "c%d" % self.n
        key = key or self.new_key(key_type)
        now = datetime.datetime.utcnow().replace(microsecond=0)
        nb = not_before or now - datetime.timedelta(days=1)
        na = not_after or now + datetime.timedelta(days=days)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(subject)
             .issuer_name(issuer.cert.subject if issuer else subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(nb).not_valid_after(na))
        if sans is None:
            sans = [cn]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]),
                                critical=False)
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        cert = b.sign(issuer.key if issuer else key, hashes.SHA256())
        c = Cert(cert, key, self.dir / (name + ".crt"), self.dir / (name + ".key"),
                 self.dir / (name + ".bundle.pem"))
        c.cert_path.write_bytes(c.pem)
        c.key_path.write_bytes(c.key_pem(key_password))
        c.bundle_path.write_bytes(c.pem + c.key_pem())
        c.not_before, c.not_after = _utc(nb), _utc(na)
        return c

    def chain(self, key_type="ec", cn="www.example.com", sans=None, ca_first=False):
        """A CA and a leaf it signed; leaf.chain_path holds leaf and CA (or CA and leaf)."""
        ca = self.make(cn="certbind test CA", sans=[], key_type=key_type, ca=True)
        leaf = self.make(cn=cn, sans=sans, key_type=key_type, issuer=ca)
        parts = [ca.pem, leaf.pem] if ca_first else [leaf.pem, ca.pem]
        leaf.chain_path = self.write("chain%d.pem" % self.n, b"".join(parts))
        leaf.ca = ca
        return leaf

    def password_file(self, password, name=None):
        self.n += 1
        return self.write(name or "pw%d.txt" % self.n, password + "\n")

    def pkcs12(self, c, password, extra=None, legacy=False):
        """c as PKCS#12 (with the CA certificates in `extra`), via `openssl pkcs12 -export`;
        legacy: RC2-40/3DES as older Windows exports it."""
        pw = self.password_file(password)
        out = self.dir / ("c%d.pfx" % self.n)
        cmd = ["openssl", "pkcs12", "-export", "-in", str(c.cert_path),
               "-inkey", str(c.bundle_path), "-passout", "file:%s" % pw, "-out", str(out)]
        if legacy:
            cmd.append("-legacy")
        if extra:
            ca_file = self.write("cas%d.pem" % self.n, b"".join(x.pem for x in extra))
            cmd += ["-certfile", str(ca_file)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return out, pw


@pytest.fixture
def certs(tmp_path):
    return CertFactory(tmp_path / "pki")


@pytest.fixture
def bound(cb, certs):
    """A store with one EC certificate (for www.example.com and *.example.com)."""
    c = certs.make(cn="www.example.com", sans=["www.example.com", "*.example.com"])
    cb.add_cert(c, native=True)
    return c
