"""acme-failing (the last attempt to obtain a managed binding's certificate failed) and
acme-pending (a managed binding has no certificate yet), design section 7. The state that
serve writes is put in with sqlite3, as serve would."""

import contextlib
import sqlite3
import time

from checklib import make_cert

WWW = "hostnameport=www.example.com:443"
SHOP = "hostnameport=shop.example.com:8443"
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def put_state(cb, key, status, last_attempt=0, next_attempt=0, failures=0, last_error=""):
    """status: 0 pending, 1 valid, 2 renewing, 3 failed."""
    with contextlib.closing(sqlite3.connect(str(cb.state / "certbind.db"), timeout=30,
                                            isolation_level=None)) as c:
        c.execute("INSERT OR REPLACE INTO acme_state VALUES(?,?,0,0,?,?,?,?,0,0)",
                  (key, status, last_attempt, next_attempt, failures, last_error))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def account(cb):
    cb.ok("set", "acme", "directory=" + STAGING, "email=admin@example.com", "agreetos=yes")


def default_for(cb, name="www.example.com"):
    """An IP default on port 443, so no-default-for-non-sni stays out of the way."""
    c = make_cert([name])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    return c


def test_managed_binding_without_certificate_is_pending_not_unknown(cb):
    default_for(cb)
    account(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    rc, f = cb.check()
    assert rc == 0  # a warning only
    assert [x["code"] for x in f] == ["acme-pending"]
    (x,) = f
    assert x["severity"] == "warning" and x["bindings"] == [WWW]
    assert "no certificate yet" in x["message"] and "certbind show acme" in x["message"]
    # Being ordered right now: still pending (no certificate), said with its status.
    put_state(cb, WWW, 2)
    (x,) = cb.findings(code="acme-pending")
    assert "(renewing)" in x["message"]


def test_pending_without_account_says_to_set_it(cb):
    default_for(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    (x,) = cb.findings(code="acme-pending")
    assert "no ACME account is set" in x["message"]
    assert "certbind set acme directory=URL email=ADDRESS" in x["message"]


def test_failing_is_an_error_with_the_cas_message_and_next_retry(cb):
    default_for(cb)
    account(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    put_state(cb, WWW, 3, last_attempt=1700000000, next_attempt=1700003600, failures=4,
              last_error="urn:ietf:params:acme:error:unauthorized: Incorrect TXT record")
    rc, f = cb.check(want_rc=1)
    assert [x["code"] for x in f] == ["acme-failing"]  # not also pending: one finding
    (x,) = f
    assert x["severity"] == "error" and x["bindings"] == [WWW]
    m = x["message"]
    assert "urn:ietf:params:acme:error:unauthorized: Incorrect TXT record" in m
    assert iso(1700000000) in m and iso(1700003600) in m and "4 times in a row" in m
    assert "certbind acme renew %s" % WWW in m


def test_failing_renewal_of_a_served_certificate_is_an_error(cb):
    """A managed binding that has a certificate and whose renewal fails."""
    default_for(cb)
    account(cb)
    c = make_cert(["shop.example.com"])
    cb.add_cert(c)
    cb.bind(SHOP, c)
    cb.ok("update", "sslcert", SHOP, "acme=enable")
    assert cb.findings(code="acme-pending") == []  # it has its certificate
    assert cb.findings(code="acme-failing") == []
    put_state(cb, SHOP, 3, last_attempt=1700000000, failures=1, last_error="timeout")
    (x,) = cb.findings(code="acme-failing")
    assert x["bindings"] == [SHOP] and "timeout" in x["message"]
    assert "1 time in a row" in x["message"]
    put_state(cb, SHOP, 1)  # renewed
    assert cb.codes() == ["no-default-for-non-sni"]  # port 8443 has no default


def test_made_manual_again_has_no_acme_finding(cb):
    c = default_for(cb)
    account(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    put_state(cb, WWW, 3, last_error="boom")
    cb.ok("update", "sslcert", WWW, "certhash=" + c.thumbprint)
    assert cb.codes() == []


def test_text_output_lists_acme_findings(cb):
    default_for(cb)
    account(cb)
    cb.ok("add", "sslcert", WWW, "acme=enable")
    put_state(cb, WWW, 3, last_attempt=1700000000, next_attempt=1700000060, failures=1,
              last_error="urn:ietf:params:acme:error:connection: Timeout during connect")
    rc, out, err = cb.run("check")
    assert rc == 1
    assert "acme-failing" in out and "Timeout during connect" in out
