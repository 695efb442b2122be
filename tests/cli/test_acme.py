"""ACME commands (design section 7): managed bindings (acme=enable), `set acme`, `show acme`
and `acme renew`. serve is not run here: its part (the serve lock, the state it writes) is
played by this test through the lock file and sqlite3, as the store's contract describes."""

import contextlib
import fcntl
import json
import os
import sqlite3
import stat
import subprocess
import threading
import time

import pytest

from conftest import ERR, each

STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
WWW = "hostnameport=www.example.com:443"
ACME_KEYS = ["directory", "email", "status", "url", "keytype", "agreetos", "dnshook", "eab"]
BINDING_KEYS = ["key", "status", "certhash", "not_after", "renew_after", "last_error",
                "last_attempt"]
ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso(t):
    return time.strftime(ISO, time.gmtime(t))


def db(cb):
    return sqlite3.connect(str(cb.db), timeout=30, isolation_level=None)


def sql(cb, query, *args):
    with contextlib.closing(db(cb)) as c:
        return c.execute(query, args).fetchall()


def put_state(cb, key, status, not_after=0, renew_after=0, last_attempt=0, next_attempt=0,
              failures=0, last_error="", renew_requested=0, renew_force=0):
    """What serve writes for a managed binding (status: 0 pending, 1 valid, 2 renewing,
    3 failed)."""
    sql(cb, "INSERT OR REPLACE INTO acme_state VALUES(?,?,?,?,?,?,?,?,?,?)", key, status,
        not_after, renew_after, last_attempt, next_attempt, failures, last_error,
        renew_requested, renew_force)


def account(cb, **extra):
    args = ["set", "acme", "directory=" + STAGING, "email=admin@example.com", "agreetos=yes"]
    args += ["%s=%s" % kv for kv in extra.items()]
    return cb.ok(*args)


@contextlib.contextmanager
def serve_lock(cb):
    """Plays a running serve: holds a POSIX write lock on STATE/serve.lock."""
    fd = os.open(str(cb.state / "serve.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield fd
    finally:
        os.close(fd)


# -- managed bindings ---------------------------------------------------------------------

def test_managed_binding_needs_no_certhash_and_shows_acme(cb, bound):
    out = cb.ok("add", "sslcert", WWW, "acme=enable", "backend=127.0.0.1:8080",
                "disablehttp2=enable")
    assert out == "Added binding %s.\n" % WWW
    b = cb.binding(WWW)
    assert b["certhash"] is None and b["acme"] == "enable"
    assert list(b)[-1] == "acme"  # after the other toggles, like them
    text = cb.ok("show", "sslcert", WWW)
    assert "    acme                  : enable\n" in text
    assert "(none yet: serve obtains it through ACME)" in text
    # A manual binding prints acme like any other toggle.
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    assert cb.binding("ipport=0.0.0.0:443")["acme"] == "disable"


def test_managed_binding_without_account_gets_a_note(cb):
    rc, out, err = cb.run("add", "sslcert", WWW, "acme=enable")
    assert rc == 0 and ERR not in err
    assert "certbind set acme directory=URL email=ADDRESS" in err
    account(cb)
    rc, out, err = cb.run("add", "sslcert", "hostnameport=*.example.com:443", "acme=enable")
    assert rc == 0 and "dnshook=PATH" in err  # a wildcard needs DNS-01


def test_acme_with_certhash_is_malformed(cb, bound):
    cb.fails(2, "add", "sslcert", WWW, "acme=enable", "certhash=" + bound.thumbprint,
             match="either certhash= or acme=enable")
    cb.ok("add", "sslcert", WWW, "certhash=" + bound.thumbprint)
    cb.fails(2, "update", "sslcert", WWW, "acme=enable", "certhash=" + bound.thumbprint,
             match="either certhash= or acme=enable")


def test_acme_needs_a_name(cb, bound, tmp_path):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    cases = [("add", "ipport=0.0.0.0:443"), ("add", "ipport=[::]:8443"),
             ("add", "ipport=192.0.2.1:443"), ("add", "ccs=443", "ccspath=%s" % tmp_path),
             ("update", "ipport=0.0.0.0:443"), ("update", "ipport=192.0.2.9:443")]

    def check(case):
        cb.fails(2, case[0], "sslcert", *case[1:], "acme=enable",
                 match="an ACME certificate needs a name")
    each(cases, check)


def test_update_makes_a_binding_managed_then_manual(cb, bound):
    cb.ok("add", "sslcert", WWW, "certhash=" + bound.thumbprint, "backend=127.0.0.1:8080")
    cb.ok("update", "sslcert", WWW, "acme=enable")
    b = cb.binding(WWW)
    assert b["acme"] == "enable"
    assert b["certhash"] == bound.thumbprint  # served until the first issuance
    assert b["backend"] == "127.0.0.1:8080"
    account(cb)
    (s,) = cb.json("show", "acme")["bindings"]
    assert s["key"] == WWW and s["certhash"] == bound.thumbprint and s["status"] == "pending"
    assert s["not_after"] == bound.not_after  # the served certificate's
    put_state(cb, WWW, 3, last_error="urn:ietf:params:acme:error:dns: NXDOMAIN")
    # A certificate given by hand makes it manual again, and its ACME state goes.
    cb.ok("update", "sslcert", WWW, "certhash=" + bound.thumbprint)
    assert cb.binding(WWW)["acme"] == "disable"
    assert cb.json("show", "acme")["bindings"] == []
    assert sql(cb, "SELECT count(*) FROM acme_state") == [(0,)]


def test_update_acme_disable_without_a_certificate_is_refused(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    cb.fails(2, "update", "sslcert", WWW, "acme=disable", match="has no certificate yet")


def test_delete_forgets_the_state(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    put_state(cb, WWW, 1, not_after=2000000000)
    cb.ok("delete", "sslcert", WWW)
    assert sql(cb, "SELECT count(*) FROM acme_state") == [(0,)]
    cb.ok("add", "sslcert", WWW, "acme=enable")
    account(cb)
    (s,) = cb.json("show", "acme")["bindings"]
    assert s["status"] == "pending" and s["not_after"] is None


def test_deploy_leaves_managed_bindings_alone(cb, certs):
    old = certs.make(cn="www.example.com")
    cb.add_cert(old, native=True)
    cb.ok("add", "sslcert", WWW, "certhash=" + old.thumbprint)
    cb.ok("update", "sslcert", WWW, "acme=enable")
    new = certs.make(cn="www.example.com")
    cb.fails(1, "deploy", new.cert_path, "key=%s" % new.key_path, match="nothing matched")


# -- set acme -----------------------------------------------------------------------------

def test_set_acme_first_time_needs_directory_and_email(cb):
    cb.fails(2, "set", "acme", "email=admin@example.com", match="directory=URL email=ADDRESS")
    cb.fails(2, "set", "acme", "directory=" + STAGING, match="directory=URL email=ADDRESS")
    cb.fails(2, "set", "acme", match="directory=URL")
    assert not cb.state.exists()  # bad input never creates a store
    out = account(cb)
    assert out.startswith("ACME account set: directory %s" % STAGING)
    a = cb.json("show", "acme")["account"]
    assert a == {"directory": STAGING, "email": "admin@example.com", "status": "unregistered",
                 "url": None, "keytype": "ecdsa", "agreetos": True, "dnshook": None,
                 "eab": False}
    cb.fails(2, "set", "acme", match="directory=URL")  # nothing to change


def test_set_acme_refuses_bad_input_and_changes_nothing(cb, tmp_path):
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o644)  # not executable
    notpem = tmp_path / "notpem.txt"
    notpem.write_text("hello\n")
    account(cb)
    cases = [
        ("directory=http://acme.example/dir", "https://"),
        ("directory=ftp://acme.example/dir", "https://"),
        ("directory=acme.example/dir", "https://"),
        ("directory=https://", "no host"),
        ("directory=https:///directory", "no host"),
        ("directory=https://:443/directory", "no host"),
        ("directory=https://acme example.org/directory", "no spaces"),
        ("directory=https://acme.example/dir ectory", "no spaces"),
        ("directory=https://acme.example/dir\tx", "no spaces"),
        ("directory=https://user:pw@acme.example/dir", "user names"),
        ("directory=https://acme.example:0/dir", "port"),
        ("directory=https://acme.example:99999/dir", "port"),
        ("directory=https://acme.example:x/dir", "port"),
        ("directory=https://-acme.example/dir", "not a host name"),
        ("directory=https://acme..example/dir", "not a host name"),
        ("directory=https://acme_example!/dir", "not a host name"),
        ("directory=https://[zz::1]/dir", "IPv6"),
        ("directory=https://" + "a" * 600 + "/dir", "too long"),
        ("email=nobody", "not an e-mail address"),
        ("email=a@b", "not an e-mail address"),
        ("email=@example.com", "not an e-mail address"),
        ("email=a b@example.com", "not an e-mail address"),
        ("email=a@b@example.com", "not an e-mail address"),
        ("cafile=%s" % (tmp_path / "missing.pem"), "No such file"),
        ("cafile=%s" % tmp_path, "not a regular file"),
        ("cafile=%s" % notpem, "holds no PEM certificate"),
        ("dnshook=%s" % (tmp_path / "missing.sh"), "No such file"),
        ("dnshook=%s" % hook, "not executable"),
        ("dnshook=%s" % tmp_path, "not a regular file"),
        ("eabkid=kid-1", "both eabkid=ID and eabhmackey=KEY"),
        ("eabhmackey=c2VjcmV0", "both eabkid=ID and eabhmackey=KEY"),
        (("eabkid=kid-1", "eabhmackey=not base64!"), "base64url"),
        (("eabkid=kid-1", "eabhmackey=abc+/def"), "base64url"),
        (("eabkid=kid-1", "eabhmackey=a"), "base64url"),
        (("eabkid=", "eabhmackey=c2VjcmV0"), "both empty"),
        (("eabkid=kid 1", "eabhmackey=c2VjcmV0"), "no spaces"),
        ("keytype=dsa", "keytype=ecdsa"),
        ("keytype=", "keytype=ecdsa"),
        ("agreetos=maybe", "agreetos=yes"),
        ("user=root", "does not take user="),
        ("color=blue", "does not take color="),
    ]

    def check(case):
        words, match = case
        words = words if isinstance(words, tuple) else (words,)
        cb.fails(2, "set", "acme", *words, match=match)
    each(cases, check)


def test_set_acme_again_changes_only_what_is_given(cb, tmp_path):
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "/dev/null", "-subj", "/CN=test CA", "-days", "30"],
        check=True, capture_output=True, timeout=60).stdout)
    account(cb)
    out = cb.ok("set", "acme", "keytype=rsa", "dnshook=%s" % hook, "cafile=%s" % ca,
                "eabkid=kid-1", "eabhmackey=c2VjcmV0LWhtYWMta2V5")
    assert out.startswith("ACME account changed")
    a = cb.json("show", "acme")["account"]
    assert a["directory"] == STAGING and a["email"] == "admin@example.com"
    assert a["keytype"] == "rsa" and a["dnshook"] == str(hook) and a["eab"] is True
    assert a["agreetos"] is True
    # serve registered the account: a new contact keeps it, a new directory does not.
    sql(cb, "UPDATE acme_account SET account_url = 'https://ca.example/acct/7'")
    cb.ok("set", "acme", "email=ops@example.com")
    a = cb.json("show", "acme")["account"]
    assert (a["status"], a["url"], a["email"]) == ("registered", "https://ca.example/acct/7",
                                                   "ops@example.com")
    out = cb.ok("set", "acme", "directory=https://acme.example:8443/dir")
    assert "registers a new account" in out
    a = cb.json("show", "acme")["account"]
    assert (a["status"], a["url"]) == ("unregistered", None)
    assert a["keytype"] == "rsa" and a["eab"] is True
    # Empty values remove the optional parts.
    cb.ok("set", "acme", "dnshook=", "cafile=", "eabkid=", "eabhmackey=", "agreetos=no")
    a = cb.json("show", "acme")["account"]
    assert (a["dnshook"], a["eab"], a["agreetos"]) == (None, False, False)
    assert "CA trust  : system roots" in cb.ok("show", "acme")


def test_eab_hmac_key_is_never_printed(cb):
    secret = "c2VjcmV0LWhtYWMta2V5LW5ldmVyLXByaW50ZWQ"
    rc, out, err = cb.run("set", "acme", "directory=" + STAGING, "email=admin@example.com",
                          "agreetos=yes", "eabkid=kid-1", "eabhmackey=" + secret)
    assert rc == 0 and secret not in out + err
    for args in (("show", "acme"), ("show", "acme", "--json"), ("show", "sslcert")):
        rc, out, err = cb.run(*args)
        assert rc == 0 and secret not in out + err


# -- show acme ----------------------------------------------------------------------------

def test_show_acme_without_account(cb):
    cb.fails(1, "show", "acme", match="certbind set acme directory=URL email=ADDRESS")
    cb.ok("add", "sslcert", WWW, "acme=enable")
    cb.fails(1, "show", "acme", "--json", match="certbind set acme directory=URL")
    cb.fails(2, "show", "acme", "extra=1")


def test_show_acme_json_shape(cb, bound):
    account(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    cb.ok("add", "sslcert", "hostnameport=shop.example.com:8443", "certhash=" + bound.thumbprint)
    cb.ok("update", "sslcert", "hostnameport=shop.example.com:8443", "acme=enable")
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    put_state(cb, "hostnameport=shop.example.com:8443", 1, not_after=2000000000,
              renew_after=1990000000, last_attempt=1700000000)
    put_state(cb, WWW, 3, last_attempt=1700000100, next_attempt=1700000700, failures=2,
              last_error="urn:ietf:params:acme:error:connection: Timeout during connect")
    doc = cb.json("show", "acme")
    assert list(doc) == ["account", "bindings"]
    assert list(doc["account"]) == ACME_KEYS
    assert [list(b) for b in doc["bindings"]] == [BINDING_KEYS] * 2
    shop, www = doc["bindings"]
    assert shop == {"key": "hostnameport=shop.example.com:8443", "status": "valid",
                    "certhash": bound.thumbprint, "not_after": iso(2000000000),
                    "renew_after": iso(1990000000), "last_error": None,
                    "last_attempt": iso(1700000000)}
    assert www == {"key": WWW, "status": "failed", "certhash": None, "not_after": None,
                   "renew_after": None,
                   "last_error": "urn:ietf:params:acme:error:connection: Timeout during connect",
                   "last_attempt": iso(1700000100)}
    text = cb.ok("show", "acme")
    lines = [l for l in text.splitlines() if l.startswith("  hostnameport=")]
    assert len(lines) == 2  # one binding per line
    assert "valid" in lines[0] and bound.thumbprint in lines[0]
    assert "failed" in lines[1] and "Timeout during connect" in lines[1]


# -- acme renew ---------------------------------------------------------------------------

def test_acme_renew_bad_command_lines(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    for words, match in [(("wait=x",), "wait=x"), (("wait=-1",), "wait="),
                         (("wait=86401",), "wait="), (("force=maybe",), "force=yes"),
                         (("hostnameport=bad name:443",), "hostnameport"),
                         ((WWW, "ipport=0.0.0.0:443"), "one binding key"),
                         (("when=now",), "does not take when=")]:
        cb.fails(2, "acme", "renew", *words, match=match)
    cb.fails(2, "acme", "revoke", match="not a command")


def test_acme_renew_without_serve_fails_and_records_nothing(cb):
    cb.fails(1, "acme", "renew", match="no managed binding")  # no store at all
    cb.ok("add", "sslcert", WWW, "acme=enable")
    cb.fails(1, "acme", "renew", match="no certbind serve is running on this state folder")
    cb.fails(1, "acme", "renew", WWW, "force=yes", match="systemctl start certbind")
    (cb.state / "serve.lock").write_text("")  # a serve ran once and stopped
    cb.fails(1, "acme", "renew", WWW, match="no certbind serve is running")


def test_acme_renew_refuses_bindings_that_are_not_managed(cb, bound):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    with serve_lock(cb):
        cb.fails(1, "acme", "renew", match="no managed binding")
        cb.fails(1, "acme", "renew", "ipport=0.0.0.0:443", match="not a managed binding")
        cb.fails(1, "acme", "renew", WWW, match="no binding " + WWW)


def test_acme_renew_wait_0_records_the_request(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    cb.ok("add", "sslcert", "hostnameport=shop.example.com:443", "acme=enable")
    with serve_lock(cb):
        before = int(time.time())
        out = cb.ok("acme", "renew", WWW, "force=yes", "wait=0")
        assert "Renewal requested for %s (forced)" % WWW in out
        rows = sql(cb, "SELECT key, renew_requested, renew_force, status FROM acme_state")
        assert len(rows) == 1
        key, requested, force, status = rows[0]
        assert key == WWW and before <= requested <= time.time() and force == 1 and status == 0
        cb.ok("acme", "renew", "wait=0")  # every managed binding
        rows = sql(cb, "SELECT key, renew_force FROM acme_state ORDER BY key")
        assert rows == [("hostnameport=shop.example.com:443", 0), (WWW, 0)]


def test_acme_renew_times_out_without_an_outcome(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    with serve_lock(cb):
        rc, out, err = cb.run("acme", "renew", WWW, "wait=2")
    assert rc == 1, (out, err)
    assert err.startswith(ERR) and len(err.splitlines()) == 1
    assert "no outcome within 2 s" in err
    assert sql(cb, "SELECT count(*) FROM acme_state WHERE renew_requested > 0") == [(1,)]


class FakeServe(threading.Thread):
    """Plays serve's scheduler against the store: waits for a renewal request, then acts
    as the protocol in store/acme.h says (`outcome`: valid, failed, declined, stop)."""

    def __init__(self, cb, key, outcome, thumbprint=None, lock_fd=None):
        super().__init__(daemon=True)
        self.cb, self.key, self.outcome, self.thumb, self.lock_fd = (cb, key, outcome,
                                                                     thumbprint, lock_fd)
        self.error = None

    def run(self):
        try:
            deadline = time.monotonic() + 60
            with contextlib.closing(db(self.cb)) as c:
                while time.monotonic() < deadline:
                    row = c.execute("SELECT renew_requested FROM acme_state WHERE key = ?",
                                    (self.key,)).fetchone()
                    if row and row[0]:
                        break
                    time.sleep(0.05)  # polls the store for the request, as serve would
                else:
                    raise AssertionError("no request was recorded")
                t = row[0]
                if self.outcome == "stop":
                    os.close(self.lock_fd)
                    return
                c.execute("BEGIN IMMEDIATE")
                if self.outcome == "valid":
                    c.execute("UPDATE bindings SET certhash = ? WHERE key = ?",
                              (self.thumb, self.key))
                    c.execute("UPDATE acme_state SET renew_requested = 0, status = 1, "
                              "last_attempt = ?, not_after = 2000000000 WHERE key = ?",
                              (t, self.key))
                elif self.outcome == "failed":
                    c.execute("UPDATE acme_state SET renew_requested = 0, status = 3, "
                              "last_attempt = ?, failures = 1, next_attempt = ?, "
                              "last_error = 'urn:ietf:params:acme:error:rateLimited: too many "
                              "certificates already issued' WHERE key = ?",
                              (t, t + 60, self.key))
                else:  # declined: not due
                    c.execute("UPDATE acme_state SET renew_requested = 0, status = 1, "
                              "last_attempt = ?, renew_after = 1990000000 WHERE key = ?",
                              (t - 100, self.key))
                c.execute("COMMIT")
        except BaseException as e:  # reported by the test
            self.error = e


def renew_with(cb, outcome, *words, thumb=None):
    fd = os.open(str(cb.state / "serve.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fake = FakeServe(cb, WWW, outcome, thumb, fd)
    fake.start()
    try:
        result = cb.run("acme", "renew", WWW, "wait=60", *words)
    finally:
        fake.join(timeout=60)
        if outcome != "stop":
            os.close(fd)
    assert fake.error is None, fake.error
    return result


def test_acme_renew_prints_the_new_certificate(cb, bound):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    rc, out, err = renew_with(cb, "valid", "force=yes", thumb=bound.thumbprint)
    assert rc == 0, (out, err)
    assert ERR not in err
    assert out == "%s: certificate %s bound, valid until %s.\n" % (WWW, bound.thumbprint,
                                                                   iso(2000000000))


def test_acme_renew_fails_with_the_cas_error(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    rc, out, err = renew_with(cb, "failed")
    assert rc == 1, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith(ERR)
    assert "urn:ietf:params:acme:error:rateLimited: too many certificates" in err


def test_acme_renew_not_due(cb, bound):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    rc, out, err = renew_with(cb, "declined")
    assert rc == 0, (out, err)
    assert "not due for renewal until %s" % iso(1990000000) in out and "force=yes" in out


def test_acme_renew_fails_when_serve_stops(cb):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    rc, out, err = renew_with(cb, "stop")
    assert rc == 1, (out, err)
    assert "serve stopped" in err and len(err.splitlines()) == 1


def test_bash_completion_knows_acme():
    text = (pytest.importorskip("pathlib").Path(__file__).resolve().parents[2] /
            "contrib" / "bash-completion" / "certbind").read_text()
    for word in ("acme", "renew", "directory=", "eabhmackey=", "dnshook=", "keytype="):
        assert word in text, word


def test_resolve_says_a_managed_binding_has_no_certificate_yet(cb, bound):
    cb.ok("add", "sslcert", WWW, "acme=enable")
    r = cb.json("resolve", "ip=127.0.0.1", "port=443", "sni=www.example.com")
    assert (r["binding"], r["certhash"], r["rule"], r["usable"]) == (WWW, None, "sni-exact", False)
    assert "without a certificate yet" in r["reason"] and "internal_error" in r["reason"]
