"""no-default-for-non-sni: a port with SNI bindings where a client that sends no server
name gets no certificate on some address, and which addresses. [::] answers IPv6 only;
0.0.0.0 answers both."""

from checklib import make_cert

NODEF = "no-default-for-non-sni"


def sni_on_443(cb):
    c = make_cert(["www.example.com", "api.example.com"])
    cb.add_cert(c)
    cb.bind("hostnameport=www.example.com:443", c)
    cb.bind("hostnameport=api.example.com:443", c)
    return c


def test_neither_default_is_reported(cb):
    c = sni_on_443(cb)
    cb.bind("ipport=0.0.0.0:8443", c)  # a default on another port does not help 443
    rc, f = cb.check()
    assert rc == 0  # a warning
    (x,) = [x for x in f if x["code"] == NODEF]
    assert x["severity"] == "warning"
    assert sorted(x["bindings"]) == ["hostnameport=api.example.com:443",
                                     "hostnameport=www.example.com:443"]
    assert "443" in x["message"] and "every address" in x["message"]
    assert "certbind add sslcert ipport=0.0.0.0:443" in x["message"]


def test_only_ipv6_default_names_the_ipv4_addresses(cb):
    c = sni_on_443(cb)
    cb.bind("ipport=[::]:443", c)
    (x,) = cb.findings(code=NODEF)
    assert "IPv4" in x["message"], x["message"]
    assert "every address" not in x["message"]
    assert "certbind add sslcert ipport=0.0.0.0:443" in x["message"]


def test_ipv4_wildcard_default_is_enough(cb):
    c = sni_on_443(cb)
    cb.bind("ipport=0.0.0.0:443", c)
    assert cb.findings(code=NODEF) == []
    cb.bind("ipport=[::]:443", c)
    assert cb.findings(code=NODEF) == []
    assert cb.check() == (0, [])


def test_specific_ip_binding_is_not_a_default(cb):
    """A client without SNI on any other address still gets nothing."""
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=127.0.0.2:443", c)
    assert cb.findings(code=NODEF) == []  # no SNI binding on the port: nothing to say
    cb.bind("hostnameport=www.example.com:443", c, force=True)
    (x,) = cb.findings(code=NODEF)
    assert x["bindings"] == ["hostnameport=www.example.com:443"]


def test_central_store_counts_as_sni(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:8443", c)
    store = cb.folder("ccs")
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % store)
    cb.ok("add", "sslcert", "ccs=8443", "ccspath=%s" % store)
    assert [x["bindings"] for x in cb.findings(code=NODEF)] == [["ccs=443"]]
