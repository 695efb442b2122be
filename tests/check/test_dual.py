"""check and bindings with two certificates (certhash=T1,T2, bindings.md section 9): each
certificate is checked (unknown-cert, key-unusable, name-mismatch, expired, expires-soon),
and a pair that is not one ECDSA and one RSA certificate for the same names is
dual-cert-mismatch, an error."""

import os
import sqlite3

from checklib import days, make_cert, now

KEY = "hostnameport=www.example.com:443"
NAMES = ["www.example.com", "example.com"]


def pair(cb, rsa_names=NAMES, **rsa_opts):
    e = make_cert(NAMES)
    r = make_cert(rsa_names, key_type="rsa", **rsa_opts)
    cb.add_cert(e)
    cb.add_cert(r)
    return e, r


def bind_pair(cb, e, r, key=KEY, force=False):
    return cb.bind(key, "%s,%s" % (e.thumbprint, r.thumbprint), force=force)


def set_certhashes(cb, key, first, second):
    """Writes a pair behind certbind's back (add sslcert refuses what this makes)."""
    db = sqlite3.connect(str(cb.state / "certbind.db"))
    with db:
        db.execute("UPDATE bindings SET certhash = ?, certhash2 = ? WHERE key = ?",
                   (first, second, key))
    db.close()


def test_a_good_pair_has_no_findings(cb):
    e, r = pair(cb)
    bind_pair(cb, e, r)
    cb.bind("ipport=0.0.0.0:443", "%s,%s" % (r.thumbprint, e.thumbprint))
    assert cb.check() == (0, [])


def test_names_that_differ_are_dual_cert_mismatch(cb):
    e, r = pair(cb, rsa_names=["www.example.com"])
    bind_pair(cb, e, r, force=True)
    (x,) = cb.findings(code="dual-cert-mismatch")
    assert x["severity"] == "error" and x["bindings"] == [KEY], x
    assert e.thumbprint in x["message"] and r.thumbprint in x["message"], x
    assert "same names" in x["message"], x


def test_two_of_one_key_type_are_dual_cert_mismatch(cb):
    e, r = pair(cb)
    e2 = make_cert(NAMES)
    cb.add_cert(e2)
    bind_pair(cb, e, r)
    set_certhashes(cb, KEY, e.thumbprint, e2.thumbprint)
    (x,) = cb.findings(code="dual-cert-mismatch")
    assert x["bindings"] == [KEY] and "both have ECDSA keys" in x["message"], x


def test_an_unknown_second_certificate(cb):
    e, r = pair(cb)
    bind_pair(cb, e, r)
    set_certhashes(cb, KEY, e.thumbprint, "AB" * 20)
    (x,) = cb.findings(code="unknown-cert")
    assert x["bindings"] == [KEY] and "AB" * 20 in x["message"], x
    assert cb.findings(code="dual-cert-mismatch") == []


def test_the_second_certificate_key_unusable(cb):
    e, r = pair(cb)
    bind_pair(cb, e, r)
    os.unlink(cb.key_path(r))
    (x,) = cb.findings(code="key-unusable")
    assert x["bindings"] == [KEY] and r.thumbprint in x["message"], x


def test_the_second_certificate_expiring_or_expired(cb):
    e = make_cert(NAMES)
    soon = make_cert(NAMES, key_type="rsa", not_after=now() + days(5))
    gone = make_cert(NAMES, key_type="rsa", not_before=now() - days(100),
                     not_after=now() - days(1))
    for c in (e, soon, gone):
        cb.add_cert(c)
    bind_pair(cb, e, soon)
    (x,) = cb.findings(code="expires-soon")
    assert x["bindings"] == [KEY] and soon.thumbprint in x["message"], x
    cb.ok("update", "sslcert", KEY, "certhash=%s,%s" % (e.thumbprint, gone.thumbprint),
          "force=yes")
    (x,) = cb.findings(code="expired")
    assert x["bindings"] == [KEY] and gone.thumbprint in x["message"], x


def test_a_name_the_second_certificate_does_not_cover(cb):
    e = make_cert(["www.example.com", "shop.example.com"])
    r = make_cert(["www.example.com"], key_type="rsa")
    cb.add_cert(e)
    cb.add_cert(r)
    key = "hostnameport=shop.example.com:443"
    bind_pair(cb, e, r, key=key, force=True)
    (x,) = cb.findings(code="name-mismatch")
    assert x["bindings"] == [key] and r.thumbprint in x["message"], x
