"""ip-shadows-sni: an IP binding answers every client of its address before any SNI binding
of its port (bindings.md sections 2 and 5), and add sslcert refuses to create one."""

import json

from checklib import make_cert

SHADOWS = "ip-shadows-sni"


def www_api(cb):
    """A certificate for www and api.example.com, the default on 443, SNI bindings for both."""
    c = make_cert(["www.example.com", "api.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)
    cb.bind("hostnameport=api.example.com:443", c)
    return c


def test_reported_with_the_sni_names_and_not_on_another_port(cb):
    c = www_api(cb)
    # The nearest configuration without the problem: the same IP binding on another port.
    cb.bind("ipport=127.0.0.2:8443", c)
    assert cb.findings(code=SHADOWS) == []
    assert cb.check()[0] == 0
    cb.ok("delete", "sslcert", "ipport=127.0.0.2:8443")

    cb.bind("ipport=127.0.0.2:443", c, force=True)
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == SHADOWS]
    assert x["severity"] == "error"
    assert x["bindings"][0] == "ipport=127.0.0.2:443"
    assert sorted(x["bindings"][1:]) == ["hostnameport=api.example.com:443",
                                         "hostnameport=www.example.com:443"]
    for word in ("127.0.0.2", "443", "www.example.com", "api.example.com"):
        assert word in x["message"], (word, x["message"])
    # the way out is named
    assert "certbind delete sslcert ipport=127.0.0.2:443" in x["message"]


def test_sni_binding_on_another_port_is_not_named(cb):
    c = www_api(cb)
    cb.bind("ipport=0.0.0.0:8443", c)
    other = make_cert(["other.example.com"])
    cb.add_cert(other)
    cb.bind("hostnameport=other.example.com:8443", other)
    cb.bind("ipport=127.0.0.2:443", c, force=True)
    rc, f = cb.check()
    assert [x["code"] for x in f] == [SHADOWS]
    (x,) = f
    assert "hostnameport=other.example.com:8443" not in x["bindings"]
    assert "other.example.com" not in x["message"]


def test_ipv6_ip_binding(cb):
    c = www_api(cb)
    cb.bind("ipport=[2001:db8::5]:8443", c)
    assert cb.findings(code=SHADOWS) == []
    cb.bind("ipport=[2001:DB8:0::5]:443", c, force=True)
    (x,) = cb.findings(code=SHADOWS)
    assert x["bindings"][0] == "ipport=[2001:db8::5]:443"
    assert "[2001:db8::5]" in x["message"] and "www.example.com" in x["message"]


def test_wildcard_ip_bindings_do_not_shadow(cb):
    """0.0.0.0 and [::] are the last resort (step 5): SNI bindings win over them."""
    c = www_api(cb)
    cb.bind("ipport=[::]:443", c)
    assert cb.findings(code=SHADOWS) == []


def test_ccs_binding_is_shadowed_too(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    store = cb.folder("ccs")
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % store)
    cb.bind("ipport=127.0.0.2:8443", c)
    assert cb.findings(code=SHADOWS) == []
    cb.bind("ipport=127.0.0.2:443", c, force=True)
    (x,) = cb.findings(code=SHADOWS)
    assert x["bindings"] == ["ipport=127.0.0.2:443", "ccs=443"]


def test_many_sni_bindings_are_counted(cb):
    c = make_cert(["*.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    for i in range(25):
        cb.bind("hostnameport=s%02d.example.com:443" % i, c)
    cb.bind("ipport=127.0.0.2:443", c, force=True)
    (x,) = cb.findings(code=SHADOWS)
    assert x["bindings"][0] == "ipport=127.0.0.2:443"
    assert len(x["bindings"]) > 1
    assert "more" in x["message"]  # 25 names are not all spelled out


# -- add sslcert refuses to create the finding ------------------------------------------------

def test_add_ip_binding_refused_when_sni_bindings_exist(cb):
    c = www_api(cb)
    before = json.loads(cb.ok("show", "sslcert", "--json"))
    msg = cb.fails(1, "add", "sslcert", "ipport=127.0.0.2:443", "certhash=" + c.thumbprint)
    assert msg.startswith("ip-shadows-sni"), msg
    assert "www.example.com" in msg and "force=yes" in msg
    assert json.loads(cb.ok("show", "sslcert", "--json")) == before
    # the nearest change without the problem is accepted
    cb.bind("ipport=127.0.0.2:8443", c)
    # and with force=yes the shadowing binding is added (with a warning), and check says so
    err = cb.bind("ipport=127.0.0.2:443", c, force=True)
    assert "warning" in err and "www.example.com" in err
    keys = [b["key"] for b in json.loads(cb.ok("show", "sslcert", "--json"))["bindings"]]
    assert "ipport=127.0.0.2:443" in keys
    assert [x["bindings"][0] for x in cb.findings(code=SHADOWS)] == ["ipport=127.0.0.2:443"]


def test_add_sni_binding_refused_when_ip_binding_exists(cb):
    c = make_cert(["www.example.com", "api.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=127.0.0.2:443", c)  # no SNI binding yet: nothing shadowed
    assert cb.findings(code=SHADOWS) == []
    msg = cb.fails(1, "add", "sslcert", "hostnameport=www.example.com:443",
                   "certhash=" + c.thumbprint)
    assert msg.startswith("ip-shadows-sni"), msg
    assert "ipport=127.0.0.2:443" in msg and "www.example.com" in msg
    # a central store binding on that port likewise
    store = cb.folder("ccs")
    msg = cb.fails(1, "add", "sslcert", "ccs=443", "ccspath=%s" % store)
    assert msg.startswith("ip-shadows-sni"), msg
    # on another port it is fine
    cb.bind("hostnameport=www.example.com:8443", c)
    cb.bind("hostnameport=www.example.com:443", c, force=True)
    (x,) = cb.findings(code=SHADOWS)
    assert x["bindings"] == ["ipport=127.0.0.2:443", "hostnameport=www.example.com:443"]
