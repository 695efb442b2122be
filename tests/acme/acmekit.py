"""Helpers for the ACME end-to-end suite: one `certbind serve` whose manager orders from
a real Pebble, the DNS-01 hook the tests hand it, TLS clients that read what is served,
and the checks on an issued certificate.

The serve side comes from tests/e2e/cbe2e.py (State, Server, certificates, try_thumb,
poll_until); Pebble and challtestsrv from tests/acme_client/pebblekit.py.
"""

import datetime
import json
import os
import re
import socket
import sqlite3
import ssl
import stat
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cbe2e import SLOW, poll_until, thumb_of_der

ACME_ERR = "urn:ietf:params:acme:error:"
ISO = "%Y-%m-%dT%H:%M:%SZ"
# Deadlines, never timing assertions: an ASan build or a loaded machine is slower.
ISSUE_WITHIN = 90 * SLOW
RENEW_WAIT = 90 * SLOW


def iso(dt):
    return dt.strftime(ISO)


def parse_iso(text):
    return datetime.datetime.strptime(text, ISO)


# ---- the DNS-01 hook ------------------------------------------------------------------

HOOK = r'''#!/usr/bin/python3
# The DNS-01 hook of the ACME tests: PATH add|del FQDN VALUE. It publishes (add) or
# removes (del) TXT _acme-challenge.FQDN. at pebble-challtestsrv's management API, and
# appends what it did to a log the test reads.
import json
import sys
import urllib.request

MGMT = %(mgmt)r
LOG = %(log)r

if len(sys.argv) != 4 or sys.argv[1] not in ("add", "del"):
    sys.stderr.write("usage: %%s add|del FQDN VALUE\n" %% sys.argv[0])
    sys.exit(2)
op, fqdn, value = sys.argv[1:]
host = "_acme-challenge.%%s." %% fqdn
if op == "add":
    path, body = "/set-txt", {"host": host, "value": value}
else:
    path, body = "/clear-txt", {"host": host}
req = urllib.request.Request(MGMT + path, data=json.dumps(body).encode(), method="POST")
with urllib.request.urlopen(req, timeout=10) as r:
    if r.status != 200:
        sys.stderr.write("challtestsrv answered %%d\n" %% r.status)
        sys.exit(1)
with open(LOG, "a") as f:
    f.write("%%s %%s %%s\n" %% (op, fqdn, value))
'''


def write_hook(folder, challsrv):
    """An executable hook in folder (0755, readable by the service user) and the log it
    appends to (0666: serve's manager runs it as the service user)."""
    folder = Path(folder)
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder, 0o755)
    log = folder / "hook.log"
    log.write_text("")
    os.chmod(log, 0o666)
    hook = folder / "dns-hook"
    hook.write_text(HOOK % {"mgmt": challsrv.url, "log": str(log)})
    os.chmod(hook, 0o755)
    return hook, log


def hook_calls(log):
    """[(op, fqdn, value)] the hook logged."""
    return [tuple(l.split(" ", 2)) for l in Path(log).read_text().splitlines() if l]


# ---- TLS clients -----------------------------------------------------------------------


def handshake(port, sni, timeout=10):
    """(thumbprint, DER) of what serve presents to an ordinary client (no ALPN) for sni,
    or ("alert:REASON" / "oserror:…", None)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                der = t.getpeercert(binary_form=True)
                return thumb_of_der(der), der
    except ssl.SSLError as e:
        return "alert:%s" % (e.reason or e), None
    except OSError as e:
        return "oserror:%s" % e.__class__.__name__, None


def acme_tls_handshake(port, sni, timeout=10):
    """What a validation ClientHello (ALPN acme-tls/1 alone) gets: the thumbprint, or
    "alert:REASON"."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["acme-tls/1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as s:
            with ctx.wrap_socket(s, server_hostname=sni) as t:
                return thumb_of_der(t.getpeercert(binary_form=True))
    except ssl.SSLError as e:
        return "alert:%s" % (e.reason or e)


def verified_handshake(port, sni, root_pem, timeout=10):
    """A client that trusts only Pebble's root and checks the name: the leaf it got
    (x509), or raises ssl.SSLError / OSError. Proves the chain served is complete."""
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as s:
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True))


def try_verified(port, sni, root_pem):
    try:
        return verified_handshake(port, sni, root_pem)
    except (ssl.SSLError, OSError):
        return None


def dns_names(cert):
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(ext.get_values_for_type(x509.DNSName))


def signed_by(cert, issuer):
    """True when issuer's key verifies cert's signature (and the names chain)."""
    if cert.issuer != issuer.subject:
        return False
    pub = issuer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        else:
            pub.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
    except Exception:
        return False
    return True


class HandshakeLoop:
    """A thread that makes fresh TLS handshakes to (port, sni) one after another until
    stopped, counting failures and the certificates it was given."""

    def __init__(self, port, sni):
        self.port, self.sni = port, sni
        self.ok = 0
        self.failures = []  # (time, what)
        self.thumbs = {}  # thumbprint -> DER, in the order first seen
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopped.is_set():
            thumb, der = handshake(self.port, self.sni)
            if der is None:
                self.failures.append((time.monotonic(), thumb))
            else:
                self.ok += 1
                self.thumbs.setdefault(thumb, der)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(30)


# ---- files ----------------------------------------------------------------------------


def db_row(st, query, *args):
    """One row read from the store (read-only), or None."""
    uri = "file:%s?mode=ro" % (st.state / "certbind.db")
    c = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        return c.execute(query, args).fetchone()
    finally:
        c.close()


def file_mode_owner(path):
    sb = os.stat(path)
    return stat.S_IMODE(sb.st_mode), sb.st_uid


def private_key_marks(path):
    """Strings that would betray the private key in path if they appeared in a log: its
    PEM body lines, its DER in hex, and its secret number in hex."""
    data = Path(path).read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    marks = [l for l in data.decode().splitlines() if l and not l.startswith("-----")]
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    marks.append(der.hex())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        marks.append("%x" % key.private_numbers().private_value)
    elif isinstance(key, rsa.RSAPrivateKey):
        marks.append("%x" % key.private_numbers().d)
    return [m for m in marks if len(m) >= 16]


# ---- serve and its ACME state ----------------------------------------------------------


class Env:
    """One state folder, one Pebble whose TLS-ALPN-01 port is the bindings' port P, one
    serve at a time, a default binding 0.0.0.0:P to catch any fall-through."""

    def __init__(self, st, pebble, challsrv, tls, port, hook, hook_log, default_cert,
                 admin_port):
        self.st, self.pebble, self.challsrv, self.tls = st, pebble, challsrv, tls
        self.P = port
        self.hook, self.hook_log = hook, hook_log
        self.default = default_cert
        self.admin = "127.0.0.1:%d" % admin_port
        self.srv = None
        self.account_set = False

    # serve
    def start_serve(self):
        self.srv = self.st.serve(workers=2, admin=self.admin).start()
        return self.srv

    def key(self, name):
        return "hostnameport=%s:%d" % (name, self.P)

    # commands
    def run(self, *args, check=True):
        return self.st.run(*args, check=check)

    def set_account(self):
        self.run("set", "acme", "directory=%s" % self.pebble.directory,
                 "email=ops@acme.test", "agreetos=yes", "cafile=%s" % self.tls.cafile,
                 "dnshook=%s" % self.hook)
        self.account_set = True

    def ensure_account(self):
        if not self.account_set:
            self.set_account()

    def show(self):
        _, out, _ = self.run("--json", "show", "acme")
        return json.loads(out)

    def state(self, name):
        """The managed binding's entry in show acme --json, or None."""
        for b in self.show()["bindings"]:
            if b["key"] == self.key(name):
                return b
        return None

    def wait_state(self, name, statuses, timeout=ISSUE_WITHIN):
        """Polls show acme until name's status is one of statuses; returns the entry."""
        got = poll_until(lambda: (lambda s: s if s and s["status"] in statuses else None)(
            self.state(name)), timeout, interval=0.2)
        assert got, "%s did not reach %s within %ss: %s\nserve log:\n%s" % (
            name, statuses, timeout, self.state(name), self.srv.log()[-5000:])
        return got

    def renew(self, name=None, force=False, wait=RENEW_WAIT):
        args = ["acme", "renew"]
        if name is not None:
            args.append(self.key(name))
        if force:
            args.append("force=yes")
        args.append("wait=%d" % wait)
        return self.run(*args, check=False)

    def check(self):
        rc, out, err = self.run("--json", "check", check=False)
        return rc, json.loads(out)["findings"], err

    def managed(self, name):
        """True when name is a managed binding of the store."""
        return self.state(name) is not None if self.account_set else False

    def ensure_issued(self, name):
        """name is managed and has a certificate from Pebble (added and waited for when
        an earlier test did not do it); returns its show acme entry."""
        self.ensure_account()
        if not self.managed(name):
            self.run("add", "sslcert", self.key(name), "acme=enable")
        s = self.wait_state(name, ("valid",))
        assert s["certhash"], s
        return s

    def served(self, name):
        return handshake(self.P, name)[0]

    def wait_served(self, name, thumb, timeout=10 * SLOW):
        assert poll_until(lambda: self.served(name) == thumb, timeout), (
            "%s is not served %s within %ss (serves %s); log:\n%s"
            % (name, thumb, timeout, self.served(name), self.srv.log()[-4000:]))

    def root_pem(self):
        return self.pebble.management("/roots/0")

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://%s/metrics" % self.admin, timeout=10) as r:
            return r.read().decode()

    def orders_metric(self):
        """{"valid": N, "failed": M}: certbind_acme_orders_total by result (kept in the
        store, so across restarts)."""
        text = self.metrics()
        got = dict(re.findall(r'^certbind_acme_orders_total\{result="(\w+)"\} (\d+)$', text,
                              re.M))
        assert set(got) == {"valid", "failed"}, text
        return {k: int(v) for k, v in got.items()}

    def settled_orders_metric(self):
        """orders_metric once /metrics describes the store as it is now: the admin process
        rebuilds its view on its own schedule, so a read just after an order may be a
        generation behind (the order's counter and its binding commit together)."""
        (gen,) = db_row(self.st, "SELECT value FROM meta WHERE name = 'generation'")

        def current():
            m = re.search(r"^certbind_snapshot_generation (\d+)$", self.metrics(), re.M)
            return m is not None and int(m.group(1)) >= int(gen)

        assert poll_until(current, 10 * SLOW, interval=0.1), (gen, self.metrics())
        return self.orders_metric()

    def wait_orders_metric(self, want, timeout=10 * SLOW):
        """Polls /metrics until the order counters are want; returns the last seen."""
        got = poll_until(lambda: (lambda m: m if m == want else None)(self.orders_metric()),
                         timeout, interval=0.1)
        assert got == want, (self.orders_metric(), want)
        return got

    def failing_metric(self, name):
        m = re.search(r'^certbind_acme_failing\{binding="%s"\} (\d)$' % re.escape(self.key(name)),
                      self.metrics(), re.M)
        return int(m.group(1)) if m else None

    def log_lines(self, event, name=None):
        lines = self.srv.lines(event)
        if name is not None:
            lines = [l for l in lines if re.search(re.escape(name) + r"\b", l)]
        return lines
