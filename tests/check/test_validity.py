"""expired, expires-soon (soon=DAYS, 14 by default) and not-yet-valid: validity dates of
bound certificates, made with dates in the past or the future (no clock tricks)."""

from checklib import days, make_cert, now

DATES = ("expired", "expires-soon", "not-yet-valid")


def bind_one(cb, c):
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)


def dated(cb, *args):
    return sorted((x["code"], x["severity"]) for x in cb.findings(*args) if x["code"] in DATES)


def test_expired(cb):
    ok = make_cert(["www.example.com"], not_before=now() - days(100), not_after=now() + days(100))
    bind_one(cb, ok)
    assert dated(cb) == []
    old = make_cert(["www.example.com"], not_before=now() - days(100),
                    not_after=now() - days(3))
    cb.add_cert(old)
    cb.ok("update", "sslcert", "hostnameport=www.example.com:443", "certhash=" + old.thumbprint)
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] in DATES]  # expired, not also "expires soon"
    assert x["code"] == "expired" and x["severity"] == "error"
    assert x["bindings"] == ["hostnameport=www.example.com:443"]
    assert old.thumbprint in x["message"]
    assert (now() - days(3)).strftime("%Y-%m-%d") in x["message"]
    assert "certbind add cert" in x["message"] and "certbind update sslcert" in x["message"]


def test_expires_soon_default_14_days(cb):
    bind_one(cb, make_cert(["www.example.com"], not_after=now() + days(10)))
    rc, f = cb.check()
    assert rc == 0  # a warning only
    (x,) = [x for x in f if x["code"] in DATES]
    assert x["code"] == "expires-soon" and x["severity"] == "warning"
    assert sorted(x["bindings"]) == ["hostnameport=www.example.com:443", "ipport=0.0.0.0:443"]
    assert "renew" in x["message"]
    # soon=DAYS moves the threshold
    assert dated(cb, "soon=5") == []
    assert dated(cb, "soon=0") == []
    assert dated(cb, "soon=11") == [("expires-soon", "warning")]


def test_expires_soon_threshold(cb):
    """20 days left: not soon by default, soon with soon=30."""
    bind_one(cb, make_cert(["www.example.com"], not_after=now() + days(20)))
    assert dated(cb) == []
    assert dated(cb, "soon=30") == [("expires-soon", "warning")]
    assert cb.check("soon=30")[0] == 0


def test_not_yet_valid(cb):
    bind_one(cb, make_cert(["www.example.com"], not_before=now() - days(1)))
    assert dated(cb) == []
    later = make_cert(["www.example.com"], not_before=now() + days(10),
                      not_after=now() + days(400))
    cb.add_cert(later)
    cb.ok("update", "sslcert", "ipport=0.0.0.0:443", "certhash=" + later.thumbprint)
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] in DATES]
    assert x["code"] == "not-yet-valid" and x["severity"] == "error"
    assert x["bindings"] == ["ipport=0.0.0.0:443"]
    assert (now() + days(10)).strftime("%Y-%m-%d") in x["message"]


def test_unbound_expired_certificate_is_not_reported(cb):
    bind_one(cb, make_cert(["www.example.com"]))
    cb.add_cert(make_cert(["old.example.com"], not_before=now() - days(100),
                          not_after=now() - days(1)))
    assert dated(cb) == []


def test_expired_central_store_file(cb):
    d = make_cert(["www.example.com"])
    cb.add_cert(d)
    cb.bind("ipport=0.0.0.0:443", d)
    store = cb.folder("ccs")
    cb.ccs_file(store, "good.example.com.pem", make_cert(["good.example.com"]))
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % store)
    assert dated(cb) == []
    bad = cb.ccs_file(store, "old.example.com.pem", make_cert(
        ["old.example.com"], not_before=now() - days(100), not_after=now() - days(1)))
    (x,) = [x for x in cb.findings() if x["code"] in DATES]
    assert x["code"] == "expired" and x["bindings"] == ["ccs=443"]
    assert str(bad) in x["message"]
