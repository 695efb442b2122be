"""Helpers for the `certbind check` suite: a state folder per test, certificates made
with python3-cryptography, and the certbind commands run against them.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/check

Environment:
  CERTBIND_BIN   the binary (default: build/certbind in the repository)

As root (as in CI), every store gets the service user `certbind` (created when missing),
so key access is tested by check and add sslcert as that user, not guessed from modes.
"""

import datetime
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parent.parent.parent
BIN = os.environ.get("CERTBIND_BIN") or str(REPO / "build" / "certbind")
IS_ROOT = os.geteuid() == 0
SERVICE_USER = "certbind"
TIMEOUT = 120  # a guard against a hung command, not a timing assertion
ERR = "certbind: error: "
WARN = "certbind: warning: "

CODES = {
    "store-damaged": "error",
    "address-not-local": "warning",
    "ip-shadows-sni": "error",
    "key-unusable": "error",
    "name-mismatch": "error",
    "expired": "error",
    "not-yet-valid": "error",
    "expires-soon": "warning",
    "unknown-cert": "error",
    "ccs-missing": "error",
    "clientca-unusable": "error",
    "chain-incomplete": "error",
    "weak-key": "warning",
    "no-default-for-non-sni": "warning",
    "acme-failing": "error",
    "acme-pending": "warning",
    "dual-cert-mismatch": "error",
}


def ensure_service_user():
    """Creates the system user `certbind` when missing (root only)."""
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", SERVICE_USER], capture_output=True, timeout=60)
        # useradd fails when another test file's process (ctest runs them side by side) made
        # the user meanwhile: only a user that is still missing is an error.
        if r.returncode != 0 and subprocess.run(["id", SERVICE_USER],
                                                capture_output=True).returncode != 0:
            raise AssertionError("useradd %s: %s" % (SERVICE_USER, r.stderr.decode()))
    return pwd.getpwnam(SERVICE_USER)


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, tzinfo=None)


def days(n):
    return datetime.timedelta(days=n)


# -- certificates -------------------------------------------------------------------------

_RSA_CACHE = {}


def new_key(key_type="ec", bits=2048, fresh=False):
    """An EC P-256 key (always fresh: cheap) or an RSA key (cached per size unless fresh)."""
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        if fresh or bits not in _RSA_CACHE:
            k = rsa.generate_private_key(public_exponent=65537, key_size=bits)
            if fresh:
                return k
            _RSA_CACHE[bits] = k
        return _RSA_CACHE[bits]
    raise ValueError(key_type)


class Cert:
    """A certificate, its key and the chain above it (CA certificates, nearest first)."""

    def __init__(self, cert, key, chain=()):
        self.cert = cert
        self.key = key
        self.chain = list(chain)
        self.thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def chain_pem(self, include=True):
        """The leaf, then (include) the chain."""
        return self.pem + (b"".join(c.pem for c in self.chain) if include else b"")


def make_cert(names=("www.example.com",), key_type="ec", bits=2048, key=None, issuer=None,
              not_before=None, not_after=None, hash_alg=None, ca=False, cn=None):
    """A certificate for DNS `names` (the first is the CN unless cn is given).
    issuer: a CA Cert that signs it (None: self-signed); its chain is the issuer's."""
    key = key or new_key(key_type, bits)
    t = now()
    nb = not_before if not_before is not None else t - days(1)
    na = not_after if not_after is not None else t + days(90)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            cn or (names[0] if names else "certbind test"))])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                            critical=False)
    b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True,
                                          crl_sign=True, encipher_only=False,
                                          decipher_only=False), critical=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SHA-1 signatures are deprecated, wanted here
        cert = b.sign(issuer.key if issuer else key, hash_alg or hashes.SHA256())
    chain = ([issuer] + issuer.chain) if issuer else []
    return Cert(cert, key, chain)


def make_ca(name="certbind test CA", key_type="ec", issuer=None):
    return make_cert(names=(), cn=name, key_type=key_type, ca=True, issuer=issuer,
                     not_after=now() + days(3650))


# -- the state folder and the commands ------------------------------------------------------

class CertBind:
    """One state folder (under a 0755 temporary folder, so the service user can reach it)
    and the certbind commands run against it."""

    def __init__(self, base, user):
        self.base = Path(base)
        self.state = self.base / "state"
        self.files = self.base / "files"
        self.files.mkdir()
        home = self.base / "home"
        home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
        self.env.update(HOME=str(home), XDG_STATE_HOME=str(home / "xdg"), LC_ALL="C.UTF-8")
        self.user = user
        self.n = 0

    def run(self, *args):
        """certbind --state DIR ARGS (str or bytes); returns (rc, stdout, stderr)."""
        p = subprocess.run([BIN, "--state", str(self.state)] +
                           [a if isinstance(a, bytes) else str(a) for a in args],
                           env=self.env, capture_output=True, timeout=TIMEOUT)
        return (p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace"))

    def ok(self, *args):
        rc, out, err = self.run(*args)
        assert rc == 0, "certbind %s: rc=%d\nstdout: %s\nstderr: %s" % (args, rc, out, err)
        assert ERR not in err, err
        return out

    def fails(self, status, *args):
        """Runs a command that must fail with `status` and leave the store unchanged;
        returns the error message (after 'certbind: error: ')."""
        before = self.dump()
        rc, out, err = self.run(*args)
        assert rc == status, "certbind %s: rc=%d, want %d\nstdout: %s\nstderr: %s" % (
            args, rc, status, out, err)
        lines = [l for l in err.splitlines() if l.startswith(ERR)]
        assert len(lines) == 1, err
        assert self.dump() == before, "certbind %s (rc=%d) changed the store" % (args, rc)
        return lines[0][len(ERR):]

    def dump(self):
        db = self.state / "certbind.db"
        if not db.exists():
            return None
        # The whole content, as `sqlite3 .dump` prints it (with the schema version), read in
        # this process: a snapshot runs on each side of every failing command.
        con = sqlite3.connect(str(db), timeout=60)
        try:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            return "PRAGMA user_version=%d;\n%s" % (version, "\n".join(con.iterdump()))
        finally:
            con.close()

    def write(self, name, data):
        p = self.files / name
        p.write_bytes(data)
        return p

    def add_cert(self, c, chain=True, pem=None):
        """Imports c (with its chain unless chain=False; pem: the exact certificate file);
        returns the thumbprint."""
        self.n += 1
        cp = self.write("c%d.pem" % self.n, pem if pem is not None else c.chain_pem(chain))
        kp = self.write("c%d.key" % self.n, c.key_pem)
        out = self.ok("add", "cert", cp, "key=%s" % kp)
        assert out.strip() == c.thumbprint, out
        return c.thumbprint

    def bind(self, key, cert, force=False, **opts):
        """add sslcert KEY certhash=… (cert: a Cert or a thumbprint)."""
        thumb = cert.thumbprint if isinstance(cert, Cert) else cert
        args = ["add", "sslcert", key, "certhash=" + thumb]
        args += ["%s=%s" % kv for kv in opts.items()]
        if force:
            args.append("force=yes")
        rc, out, err = self.run(*args)
        assert rc == 0, "certbind %s: rc=%d\nstdout: %s\nstderr: %s" % (args, rc, out, err)
        return err

    def folder(self, name, mode=0o755):
        """A folder under the 0755 base (reachable by the service user)."""
        d = self.base / name
        d.mkdir()
        os.chmod(d, mode)
        return d

    def ccs_file(self, folder, name, c, key=True):
        """A central-store file: certificate and (key) its key, 0600, owned by the service
        user (as the key loader demands)."""
        p = Path(folder) / name
        p.write_bytes(c.pem + (c.key_pem if key else b""))
        os.chmod(p, 0o600)
        if self.user:
            u = pwd.getpwnam(self.user)
            os.chown(p, u.pw_uid, u.pw_gid)
        return p

    def key_path(self, cert):
        thumb = cert.thumbprint if isinstance(cert, Cert) else cert
        (e,) = [e for e in json.loads(self.ok("show", "cert", "--json"))["certs"]
                if e["thumbprint"] == thumb]
        return Path(e["key_path"])

    def check(self, *args, want_rc=None):
        """check --json ARGS: validates the shape; returns (rc, findings)."""
        rc, out, err = self.run("check", "--json", *args)
        assert rc in (0, 1), "check: rc=%d\nstdout: %s\nstderr: %s" % (rc, out, err)
        doc = json.loads(out)
        assert_shape(doc)
        f = doc["findings"]
        errors = [x for x in f if x["severity"] == "error"]
        assert rc == (1 if errors else 0), "rc=%d with %d errors: %s" % (rc, len(errors), f)
        if want_rc is not None:
            assert rc == want_rc, f
        return rc, f

    def findings(self, *args, code=None):
        f = self.check(*args)[1]
        return [x for x in f if code is None or x["code"] == code]

    def codes(self, *args):
        return sorted({x["code"] for x in self.check(*args)[1]})


def assert_shape(doc):
    """check --json: exactly {"findings": [{"code","severity","bindings","message"}]}."""
    assert isinstance(doc, dict) and list(doc) == ["findings"], doc
    assert isinstance(doc["findings"], list)
    for x in doc["findings"]:
        assert sorted(x) == ["bindings", "code", "message", "severity"], x
        assert x["code"] in CODES, x
        assert x["severity"] == CODES[x["code"]], x
        assert isinstance(x["bindings"], list) and all(isinstance(b, str) for b in x["bindings"])
        assert isinstance(x["message"], str) and x["message"]


def new_store(service_user=True):
    """A CertBind in a fresh 0755 temporary folder; as root with service_user, the store's
    service user is `certbind`."""
    base = tempfile.mkdtemp(prefix="certbind-check-")
    os.chmod(base, 0o755)
    user = None
    if IS_ROOT and service_user:
        ensure_service_user()
        user = SERVICE_USER
    cb = CertBind(base, user)
    if user:
        cb.ok("set", "user=" + user)
    return cb


def remove_store(cb):
    shutil.rmtree(cb.base, ignore_errors=True)
