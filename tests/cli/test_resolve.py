"""resolve: which binding answers a ClientHello, and by which rule (bindings.md section 2)."""

import os

import pytest

from conftest import each

SHAPE = ["binding", "certhash", "rule", "usable", "reason"]


def resolve(cb, ip, port, sni=None):
    args = ["resolve", "ip=" + ip, "port=%d" % port] + (["sni=" + sni] if sni else [])
    r = cb.json(*args)
    assert list(r) == SHAPE, r
    assert isinstance(r["usable"], bool) and isinstance(r["reason"], str) and r["reason"]
    return r


@pytest.fixture
def world(cb, certs):
    """One certificate per binding, so every answer names its own thumbprint."""
    specs = {
        "ipport=192.0.2.10:443": "ip4",
        "ipport=[2001:db8::10]:443": "ip6",
        "hostnameport=www.example.com:443": "exact",
        "hostnameport=*.example.com:443": "wild",
        "ipport=0.0.0.0:443": "any4",
        "ipport=[::]:443": "any6",
        "ipport=0.0.0.0:8443": "any4only",
        "hostnameport=sni.example.net:8443": "sni8443",
    }
    tp = {}
    for key, name in specs.items():
        c = certs.make(cn="%s.example.com" % name, key_type="rsa" if name == "ip4" else "ec")
        cb.add_cert(c, native=True)
        # force=yes: the IP bindings hide SNI bindings on purpose (rule 1 wins)
        cb.ok("add", "sslcert", key, "certhash=" + c.thumbprint, "force=yes", native=True)
        tp[key] = c.thumbprint
    return tp


CASES = [
    # (ip, port, sni) -> (binding, rule)
    (("192.0.2.10", 443, "www.example.com"), ("ipport=192.0.2.10:443", "ip")),
    (("192.0.2.10", 443, None), ("ipport=192.0.2.10:443", "ip")),
    (("::ffff:192.0.2.10", 443, "www.example.com"), ("ipport=192.0.2.10:443", "ip")),
    (("[::ffff:192.0.2.10]", 443, None), ("ipport=192.0.2.10:443", "ip")),
    (("2001:db8::10", 443, "a.example.com"), ("ipport=[2001:db8::10]:443", "ip")),
    (("[2001:DB8:0::10]", 443, None), ("ipport=[2001:db8::10]:443", "ip")),
    (("192.0.2.99", 443, "www.example.com"), ("hostnameport=www.example.com:443", "sni-exact")),
    (("192.0.2.99", 443, "WWW.Example.COM."), ("hostnameport=www.example.com:443", "sni-exact")),
    (("2001:db8::99", 443, "www.example.com"), ("hostnameport=www.example.com:443", "sni-exact")),
    (("192.0.2.99", 443, "api.example.com"), ("hostnameport=*.example.com:443", "sni-wildcard")),
    (("192.0.2.99", 443, "API.example.com"), ("hostnameport=*.example.com:443", "sni-wildcard")),
    # *.example.com covers one label only
    (("192.0.2.99", 443, "example.com"), ("ipport=0.0.0.0:443", "wildcard-ip")),
    (("192.0.2.99", 443, "a.b.example.com"), ("ipport=0.0.0.0:443", "wildcard-ip")),
    (("192.0.2.99", 443, "www.example.org"), ("ipport=0.0.0.0:443", "wildcard-ip")),
    # no SNI: only rules 1 and 5
    (("192.0.2.99", 443, None), ("ipport=0.0.0.0:443", "wildcard-ip")),
    (("2001:db8::99", 443, None), ("ipport=[::]:443", "wildcard-ip")),
    (("2001:db8::99", 443, "other.test"), ("ipport=[::]:443", "wildcard-ip")),
    (("::ffff:192.0.2.99", 443, None), ("ipport=0.0.0.0:443", "wildcard-ip")),
    # IPv6 falls back to 0.0.0.0 when there is no [::] on the port
    (("2001:db8::99", 8443, None), ("ipport=0.0.0.0:8443", "wildcard-ip")),
    (("2001:db8::99", 8443, "sni.example.net"), ("hostnameport=sni.example.net:8443",
                                                  "sni-exact")),
    # SNI bindings are per port
    (("192.0.2.99", 8443, "www.example.com"), ("ipport=0.0.0.0:8443", "wildcard-ip")),
    (("192.0.2.99", 9443, "sni.example.net"), (None, "none")),
    (("192.0.2.10", 9443, None), (None, "none")),
]


def test_rules(cb, world):
    def check(case):
        (ip, port, sni), (binding, rule) = case
        r = resolve(cb, ip, port, sni)
        assert (r["binding"], r["rule"]) == (binding, rule), r
        if binding is None:
            assert r["certhash"] is None and r["usable"] is False
            alert = "unrecognized_name" if sni else "handshake_failure"
            assert alert in r["reason"]
        else:
            assert r["certhash"] == world[binding]
            assert r["usable"] is True, r
    each(CASES, check)
    # the same answers in text
    out = cb.ok("resolve", "ip=192.0.2.99", "port=443", "sni=api.example.com")
    assert "hostnameport=*.example.com:443" in out and "sni-wildcard" in out
    assert world["hostnameport=*.example.com:443"] in out
    out = cb.ok("resolve", "ip=192.0.2.99", "port=443")
    assert "wildcard-ip" in out and "no server name" in out


def test_empty_state(cb):
    for sni, alert in ((None, "handshake_failure"), ("www.example.com", "unrecognized_name")):
        r = resolve(cb, "192.0.2.1", 443, sni)
        assert r["binding"] is None and r["certhash"] is None and r["rule"] == "none"
        assert r["usable"] is False and alert in r["reason"]
    assert not cb.state.exists()


def test_ccs(cb, certs, bound, tmp_path):
    ccs = tmp_path / "ccs"
    ccs.mkdir()
    www = certs.make(cn="www.example.com")
    wild = certs.make(cn="*.example.com", key_type="rsa")
    (ccs / "www.example.com.pem").write_bytes(www.bundle_path.read_bytes())
    (ccs / "_.example.com.pem").write_bytes(wild.bundle_path.read_bytes())
    (ccs / "README.txt").write_text("not a certificate\n")
    for f in ("www.example.com.pem", "_.example.com.pem"):  # they hold private keys
        (ccs / f).chmod(0o600)
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % ccs)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    for sni, c in (("www.example.com", www), ("WWW.example.com.", www),
                   ("shop.example.com", wild)):
        r = resolve(cb, "192.0.2.1", 443, sni)
        assert r == {"binding": "ccs=443", "certhash": c.thumbprint, "rule": "ccs",
                     "usable": True, "reason": r["reason"]}
    # no file for the name, or no SNI: the wildcard IP binding
    for sni in ("a.b.example.com", "example.com", None):
        r = resolve(cb, "192.0.2.1", 443, sni)
        assert r["rule"] == "wildcard-ip" and r["certhash"] == bound.thumbprint
    out = cb.ok("resolve", "ip=192.0.2.1", "port=443", "sni=shop.example.com")
    assert "_.example.com.pem" in out
    # a SNI binding wins over the central store
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint)
    assert resolve(cb, "192.0.2.1", 443, "www.example.com")["rule"] == "sni-exact"


def test_ccs_file_without_key_is_unusable(cb, certs, tmp_path):
    ccs = tmp_path / "ccs"
    ccs.mkdir()
    c = certs.make(cn="www.example.com")
    (ccs / "www.example.com.pem").write_bytes(c.pem)  # certificate only
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % ccs)
    r = resolve(cb, "192.0.2.1", 443, "www.example.com")
    assert r["rule"] == "ccs" and r["binding"] == "ccs=443"
    assert r["usable"] is False and "internal_error" in r["reason"]


@pytest.mark.parametrize("damage", ["deleted", "other-key", "garbage", "unreadable"])
def test_unusable_key(cb, certs, bound, damage):
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    (entry,) = cb.certs()
    key = entry["key_path"]
    assert resolve(cb, "192.0.2.1", 443, "www.example.com")["usable"] is True
    if damage == "deleted":
        os.unlink(key)
    elif damage == "other-key":
        with open(key, "wb") as f:
            f.write(certs.make().key_pem())
    elif damage == "garbage":
        with open(key, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        os.chmod(key, 0)
    r = resolve(cb, "192.0.2.1", 443, "www.example.com")
    # no fall-through to another binding
    assert r["binding"] == "hostnameport=www.example.com:443" and r["rule"] == "sni-exact"
    assert r["certhash"] == bound.thumbprint
    assert r["usable"] is False
    assert "internal_error" in r["reason"] and len(r["reason"]) > 40
    out = cb.ok("resolve", "ip=192.0.2.1", "port=443", "sni=www.example.com")
    assert "Usable      : no" in out


def test_unknown_certificate_is_unusable(cb):
    cb.run("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + "AB" * 20, "force=yes")
    r = resolve(cb, "192.0.2.1", 443)
    assert r["binding"] == "ipport=0.0.0.0:443" and r["certhash"] == "AB" * 20
    assert r["usable"] is False and "AB" * 20 in r["reason"]


def test_reject(cb, bound):
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint,
          "reject=enable")
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    r = resolve(cb, "192.0.2.1", 443, "www.example.com")
    assert r["binding"] == "hostnameport=www.example.com:443" and r["rule"] == "sni-exact"
    assert r["certhash"] == bound.thumbprint
    assert r["usable"] is False
    assert "reject" in r["reason"] and "handshake_failure" in r["reason"]
    cb.ok("update", "sslcert", "hostnameport=www.example.com:443", "reject=disable")
    assert resolve(cb, "192.0.2.1", 443, "www.example.com")["usable"] is True


MALFORMED = [
    [],
    ["ip=192.0.2.1"],
    ["port=443"],
    ["ip=192.0.2.1", "port=0"],
    ["ip=192.0.2.1", "port=65536"],
    ["ip=192.0.2.1", "port=https"],
    ["ip=192.0.2", "port=443"],
    ["ip=www.example.com", "port=443"],
    ["ip=[192.0.2.1]", "port=443"],
    ["ip=[2001:db8::1", "port=443"],
    ["ip=192.0.2.1:443", "port=443"],
    ["ip=192.0.2.1", "port=443", "sni=a..b"],
    ["ip=192.0.2.1", "port=443", "sni=*.example.com"],
    ["ip=192.0.2.1", "port=443", "sni="],
    ["ip=192.0.2.1", "port=443", "certhash=" + "A" * 40],
    ["ip=192.0.2.1", "port=443", "port=444"],
    ["ip=192.0.2.1", "port=443", "extra"],
]


def test_malformed(cb, bound):
    each(MALFORMED, lambda args: cb.fails(2, "resolve", *args))
