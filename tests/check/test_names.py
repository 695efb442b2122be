"""name-mismatch: an SNI binding name, or a central-store file name, that its certificate does
not cover (RFC 6125: one whole left-most label per wildcard, no partial-label wildcards,
case-insensitive)."""

from checklib import make_cert

MISMATCH = "name-mismatch"


def mismatched(cb):
    """The bindings (first of each name-mismatch finding)."""
    return sorted(x["bindings"][0] for x in cb.findings(code=MISMATCH))


def test_sni_binding_not_covered(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)
    assert mismatched(cb) == []
    cb.bind("hostnameport=shop.example.com:443", c)
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == MISMATCH]
    assert x["severity"] == "error"
    assert x["bindings"] == ["hostnameport=shop.example.com:443"]
    assert "shop.example.com" in x["message"] and "www.example.com" in x["message"]
    assert "certbind update sslcert hostnameport=shop.example.com:443" in x["message"]


def test_ip_bindings_have_no_name_to_match(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("ipport=192.0.2.7:443", c)
    assert mismatched(cb) == []


def test_wildcard_covers_exactly_one_label(cb):
    c = make_cert(["*.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    for name in ("a.example.com", "www.example.com", "*.example.com",  # covered
                 "a.b.example.com", "example.com", "a.example.org"):  # not covered
        cb.bind("hostnameport=%s:443" % name, c)
    assert mismatched(cb) == ["hostnameport=a.b.example.com:443",
                              "hostnameport=a.example.org:443",
                              "hostnameport=example.com:443"]


def test_partial_label_wildcard_is_not_honoured(cb):
    partial = make_cert(["w*.example.com"])
    whole = make_cert(["*.example.com"])
    cb.add_cert(partial)
    cb.add_cert(whole)
    cb.bind("ipport=0.0.0.0:443", whole)
    cb.bind("hostnameport=www.example.com:443", partial)
    cb.bind("hostnameport=www.example.com:8443", whole)
    cb.bind("ipport=0.0.0.0:8443", whole)
    assert mismatched(cb) == ["hostnameport=www.example.com:443"]


def test_case_insensitive(cb):
    c = make_cert(["WWW.Example.COM", "*.EXAMPLE.org"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)
    cb.bind("hostnameport=Shop.Example.ORG:443", c)
    assert mismatched(cb) == []
    cb.bind("hostnameport=WWW.EXAMPLE.NET:443", c)
    assert mismatched(cb) == ["hostnameport=www.example.net:443"]


def test_central_store_file_names(cb):
    www, star, other = (make_cert(["www.example.com"]), make_cert(["*.example.com"]),
                        make_cert(["www.example.net"]))
    d = make_cert(["default.example.com"])
    cb.add_cert(d)
    cb.bind("ipport=0.0.0.0:443", d)
    store = cb.folder("ccs")
    cb.ccs_file(store, "www.example.com.pem", www)
    cb.ccs_file(store, "_.example.com.pem", star)
    cb.ccs_file(store, "SHOP.Example.NET.pem", make_cert(["shop.example.net"]))  # any case
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % store)
    assert mismatched(cb) == []
    assert cb.check()[0] == 0
    # a file whose name its certificate does not cover
    bad = cb.ccs_file(store, "api.example.org.pem", other)
    badwild = cb.ccs_file(store, "_.example.org.pem", www)
    rc, f = cb.check()
    assert rc == 1
    xs = [x for x in f if x["code"] == MISMATCH]
    assert len(xs) == 2
    assert sorted(str(p) for p in (bad, badwild) for x in xs if str(p) in x["message"]) == \
        sorted([str(bad), str(badwild)])
    for x in xs:
        assert x["bindings"] == ["ccs=443"] and x["severity"] == "error"
        assert "rename the file or replace the certificate" in x["message"]
    (x,) = [x for x in xs if str(bad) in x["message"]]
    assert "api.example.org" in x["message"] and "www.example.net" in x["message"]
