"""add / update / delete / show sslcert (bindings.md sections 1 and 4)."""

import pytest

from conftest import each, warnings

TOGGLES = ["disablehttp2", "disabletls12", "disabletls13", "disablelegacytls",
           "clientcertnegotiation", "enablesessionticket", "disableocspstapling", "reject"]
APPID = "{00112233-4455-6677-8899-aabbccddeeff}"


def defaults(key, certhash):
    d = {"key": key, "certhash": certhash, "appid": None, "backend": None, "clientca": None,
         "proxyprotocol": "off"}
    d.update({t: "disable" for t in TOGGLES})
    d["acme"] = "disable"  # a manual binding (acme=enable: test_acme.py)
    return d


# -- canonical keys ---------------------------------------------------------------------

CANONICAL = [
    ("ipport=203.0.113.5:443", "ipport=203.0.113.5:443"),
    ("ipport=[2001:DB8:0:0:0:0:0:5]:443", "ipport=[2001:db8::5]:443"),
    ("ipport=[::ffff:203.0.113.5]:443", "ipport=203.0.113.5:443"),
    ("ipport=[::FFFF:CB00:7105]:8443", "ipport=203.0.113.5:8443"),
    ("ipport=0.0.0.0:443", "ipport=0.0.0.0:443"),
    ("ipport=[::]:443", "ipport=[::]:443"),
    ("ipport=[0:0::0]:443", "ipport=[::]:443"),
    ("hostnameport=WWW.Example.COM:443", "hostnameport=www.example.com:443"),
    ("hostnameport=www.example.com.:443", "hostnameport=www.example.com:443"),
    ("hostnameport=*.Example.com:443", "hostnameport=*.example.com:443"),
    ("HostNamePort=b\u00fccher.example:443", "hostnameport=xn--bcher-kva.example:443"),
    ("hostnameport=a_b.example.com:00443", "hostnameport=a_b.example.com:443"),
]


def test_add_prints_and_stores_canonical_key(cb, bound):
    def check(case):
        given, canonical = case
        out = cb.ok("add", "sslcert", given, "certhash=" + bound.thumbprint.lower())
        assert out == "Added binding %s.\n" % canonical
        # Any spelling of the key finds it; the canonical one is printed.
        assert cb.binding(given) == defaults(canonical, bound.thumbprint)
        # The same key in its canonical spelling already exists.
        cb.fails(1, "add", "sslcert", canonical, "certhash=" + bound.thumbprint,
                 match=["already exists", canonical])
        assert cb.ok("delete", "sslcert", given) == "Deleted binding %s.\n" % canonical
    each(CANONICAL, check)
    assert cb.bindings() == []
    # show (text and JSON) and show cert print the canonical keys too
    some = [CANONICAL[i] for i in (3, 4, 5, 7)]
    for given, _ in some:
        cb.ok("add", "sslcert", given, "certhash=" + bound.thumbprint)
    canonical = sorted(c for _, c in some)
    assert [b["key"] for b in cb.bindings()] == canonical
    assert sorted(cb.certs()[0]["bindings"]) == canonical
    text = cb.ok("show", "sslcert")
    assert [l for l in text.splitlines() if l and not l.startswith(" ")] == canonical
    assert cb.ok("show", "sslcert", CANONICAL[3][0]).splitlines()[0] == CANONICAL[3][1]


def test_ip_binding_shadowing_sni_needs_force(cb, bound):
    """An IP binding answers every client of its address before any SNI binding on the port
    (the ip-shadows-sni finding of check): add sslcert refuses to create that unless forced."""
    t = bound.thumbprint
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + t)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)  # a default is fine
    cb.ok("add", "sslcert", "ipport=192.0.2.5:8443", "certhash=" + t)  # another port too
    cb.fails(1, "add", "sslcert", "ipport=192.0.2.5:443", "certhash=" + t,
             match=["ipport=192.0.2.5:443", "hostnameport=www.example.com:443", "force=yes"])
    cb.fails(1, "add", "sslcert", "hostnameport=api.example.com:8443", "certhash=" + t,
             match=["ipport=192.0.2.5:8443", "hostnameport=api.example.com:8443", "force=yes"])
    rc, out, err = cb.run("add", "sslcert", "ipport=192.0.2.5:443", "certhash=" + t, "force=yes")
    assert rc == 0 and out == "Added binding ipport=192.0.2.5:443.\n"
    (w,) = warnings(err)
    assert "hostnameport=www.example.com:443" in w
    r = cb.json("resolve", "ip=192.0.2.5", "port=443", "sni=www.example.com")
    assert (r["binding"], r["rule"]) == ("ipport=192.0.2.5:443", "ip")


def test_thumbprint_forms(cb, bound):
    t = bound.thumbprint
    forms = [t.lower(), " ".join(t[i:i + 2] for i in range(0, 40, 2)),
             ":".join(t[i:i + 2] for i in range(0, 40, 2)).lower()]
    for i, form in enumerate(forms):
        cb.ok("add", "sslcert", "ipport=10.0.0.%d:443" % (i + 1), "certhash=" + form)
    assert {b["certhash"] for b in cb.bindings()} == {t}


def test_v4_and_v6_wildcards_are_different_keys(cb, bound):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)
    cb.ok("add", "sslcert", "ipport=[::]:443", "certhash=" + t)
    cb.fails(1, "add", "sslcert", "ipport=[::ffff:0.0.0.0]:443", "certhash=" + t,
             match="already exists")
    assert [b["key"] for b in cb.bindings()] == ["ipport=0.0.0.0:443", "ipport=[::]:443"]


def test_add_with_every_option(cb, bound):
    t = bound.thumbprint
    opts = ["appid={00112233-4455-6677-8899-AABBCCDDEEFF}", "backend=[::FFFF:127.0.0.1]:8080",
            "proxyprotocol=v2"] + ["%s=enable" % x for x in TOGGLES if x != "disabletls12"]
    cb.ok("add", "sslcert", "hostnameport=api.example.com:443", "certhash=" + t, *opts)
    want = defaults("hostnameport=api.example.com:443", t)
    want.update({"appid": APPID, "backend": "127.0.0.1:8080", "proxyprotocol": "v2"})
    want.update({x: "enable" for x in TOGGLES if x != "disabletls12"})
    assert cb.binding("hostnameport=api.example.com:443") == want
    text = cb.ok("show", "sslcert", "hostnameport=api.example.com:443")
    assert "127.0.0.1:8080" in text and APPID in text


@pytest.mark.parametrize("given,canonical", [
    ("127.0.0.1:8080", "127.0.0.1:8080"),
    ("[2001:DB8::1]:80", "[2001:db8::1]:80"),
    ("Backend.Example.COM.:8080", "backend.example.com:8080"),
    ("localhost:80", "localhost:80"),
])
def test_backend_is_canonical(cb, bound, given, canonical):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint,
          "backend=" + given)
    assert cb.binding("ipport=0.0.0.0:443")["backend"] == canonical


# -- add sslcert: malformed (exit 2, store unchanged) ------------------------------------

BAD_ADD = [
    # no key, two keys, unknown key
    [],
    ["ipport=1.2.3.4:443", "hostnameport=a.example.com:443"],
    ["ipport=1.2.3.4:443", "ccs=443", "ccspath=/tmp"],
    ["hostport=a.example.com:443"],
    # ports
    ["ipport=1.2.3.4:0"],
    ["ipport=1.2.3.4:65536"],
    ["ipport=1.2.3.4:99999"],
    ["ipport=1.2.3.4:https"],
    ["ipport=1.2.3.4:"],
    ["ipport=1.2.3.4"],
    ["ipport=1.2.3.4:-1"],
    ["ipport=1.2.3.4:44 3"],
    ["hostnameport=a.example.com:0"],
    ["hostnameport=a.example.com"],
    ["hostnameport=a.example.com:65536"],
    ["ccs=0", "ccspath=/tmp"],
    ["ccs=443x", "ccspath=/tmp"],
    # addresses and names
    ["ipport=1.2.3:443"],
    ["ipport=01.2.3.4:443"],
    ["ipport=1.2.3.256:443"],
    ["ipport=2001:db8::5:443"],
    ["ipport=[2001:db8::5]443"],
    ["ipport=[1.2.3.4]:443"],
    ["ipport=[2001:db8::g]:443"],
    ["ipport=www.example.com:443"],
    ["hostnameport=1.2.3.4:443"],
    ["hostnameport=[2001:db8::5]:443"],
    ["hostnameport=a..example.com:443"],
    ["hostnameport=-a.example.com:443"],
    ["hostnameport=a.*.example.com:443"],
    ["hostnameport=*:443"],
    ["hostnameport=w*.example.com:443"],
    ["hostnameport=a b.example.com:443"],
    ["hostnameport=:443"],
    ["hostnameport=%s.example.com:443" % ("a" * 64)],
]
BAD_OPTS = [
    # thumbprints
    ["certhash="],
    ["certhash=" + "A" * 39],
    ["certhash=" + "A" * 41],
    ["certhash=" + "G" * 40],
    ["certhash=0x" + "A" * 38],
    # GUIDs
    ["appid=not-a-guid"],
    ["appid={00112233-4455-6677-8899-aabbccddeef}"],
    ["appid={00112233-4455-6677-8899-aabbccddeeff"],
    ["appid=00112233445566778899aabbccddeeff"],
    ["appid={00112233-4455-6677-8899-aabbccddeeffx}"],
    ["appid={0011223g-4455-6677-8899-aabbccddeeff}"],
    # backends
    ["backend=127.0.0.1"],
    ["backend=127.0.0.1:0"],
    ["backend=127.0.0.1:70000"],
    ["backend=0.0.0.0:80"],
    ["backend=[::]:80"],
    ["backend=::1:80"],
    ["backend=[::1]"],
    ["backend=bad..host:80"],
    ["backend=:80"],
    # other options
    ["proxyprotocol=v3"],
    ["proxyprotocol=on"],
    ["reject=yes"],
    ["disablehttp2=true"],
    ["reject=enabled"],
    ["force=maybe"],
    ["frobnicate=enable"],
    ["ccspath=/tmp"],
    ["disabletls12=enable", "disabletls13=enable"],
    ["extra-word"],
]


@pytest.mark.parametrize("cases", [BAD_ADD, [["ipport=1.2.3.4:443"] + o for o in BAD_OPTS]],
                         ids=["keys", "options"])
def test_add_malformed(cb, bound, cases):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)

    def check(args):
        if not any(a.startswith("certhash=") for a in args):
            args = args + ["certhash=" + t]
        cb.fails(2, "add", "sslcert", *args)
    each(cases, check)


def test_add_needs_certhash(cb, bound):
    cb.fails(2, "add", "sslcert", "ipport=1.2.3.4:443", match="certhash")
    cb.fails(2, "add", "sslcert", "ccs=443", "ccspath=/srv/ccs",
             "certhash=" + bound.thumbprint, match="certhash")
    cb.fails(2, "add", "sslcert", "ccs=443", match="ccspath")
    cb.fails(2, "add", "sslcert", "ccs=443", "ccspath=relative/dir", match="ccspath")


def test_add_malformed_on_empty_state_creates_nothing(cb):
    cb.fails(2, "add", "sslcert", "ipport=1.2.3.4:70000", "certhash=" + "A" * 40)
    cb.fails(2, "add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + "A" * 40, "appid=x")
    assert not cb.state.exists()


# -- add sslcert: operation failures (exit 1) -------------------------------------------

def test_add_existing_binding(cb, certs, bound):
    other = certs.make(cn="other.example.com")
    cb.add_cert(other)
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint,
          "backend=127.0.0.1:8080")
    msg = cb.fails(1, "add", "sslcert", "hostnameport=WWW.example.com.:443",
                   "certhash=" + other.thumbprint, match="already exists")
    assert "update sslcert" in msg
    assert cb.binding("hostnameport=www.example.com:443")["certhash"] == bound.thumbprint
    # force=yes with an unknown certificate: still "already exists", and no warning
    cb.fails(1, "add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + "AB" * 20,
             "force=yes", match="already exists")


def test_add_unknown_certificate(cb, bound):
    missing = "AB" * 20
    cb.fails(1, "add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + missing,
             match=[missing, "add cert", "force=yes"])
    rc, out, err = cb.run("add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + missing,
                          "force=yes")
    assert rc == 0 and out == "Added binding ipport=1.2.3.4:443.\n"
    (w,) = warnings(err)
    assert "ipport=1.2.3.4:443" in w and missing in w
    assert "error" not in err
    assert cb.binding("ipport=1.2.3.4:443")["certhash"] == missing


def test_add_unknown_certificate_on_empty_state(cb):
    rc, out, err = cb.run("add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + "AB" * 20)
    assert rc == 1 and out == ""
    assert cb.bindings() == []


def test_add_with_unusable_key(cb, certs, bound):
    (entry,) = cb.certs()
    with open(entry["key_path"], "wb") as f:
        f.write(certs.make().key_pem())  # another key
    cb.fails(1, "add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + bound.thumbprint,
             match=["ipport=1.2.3.4:443", "force=yes"])
    rc, out, err = cb.run("add", "sslcert", "ipport=1.2.3.4:443",
                          "certhash=" + bound.thumbprint, "force=yes")
    assert rc == 0 and len(warnings(err)) == 1


# -- update sslcert ---------------------------------------------------------------------

def test_update_changes_only_the_given_fields(cb, certs, bound):
    t = bound.thumbprint
    key = "hostnameport=www.example.com:443"
    cb.ok("add", "sslcert", key, "certhash=" + t, "backend=127.0.0.1:8080", "appid=" + APPID,
          "proxyprotocol=v1", "disablehttp2=enable", "disabletls13=enable")
    want = cb.binding(key)
    steps = [
        (["reject=enable"], {"reject": "enable"}),
        (["disablehttp2=disable"], {"disablehttp2": "disable"}),
        (["backend=[::1]:9090"], {"backend": "[::1]:9090"}),
        (["proxyprotocol=off", "enablesessionticket=enable"],
         {"proxyprotocol": "off", "enablesessionticket": "enable"}),
        (["appid={FFFFFFFF-4455-6677-8899-AABBCCDDEEFF}"],
         {"appid": "{ffffffff-4455-6677-8899-aabbccddeeff}"}),
        (["backend=none"], {"backend": None}),
    ]
    for opts, changed in steps:
        out = cb.ok("update", "sslcert", "hostnameport=WWW.EXAMPLE.COM:443", *opts)
        assert out == "Updated binding %s.\n" % key
        want.update(changed)
        assert cb.binding(key) == want
    other = certs.make(cn="www.example.com", key_type="rsa")
    cb.add_cert(other)
    cb.ok("update", "sslcert", key, "certhash=" + other.thumbprint.lower())
    want["certhash"] = other.thumbprint
    assert cb.binding(key) == want


def test_update_one_binding_leaves_the_others(cb, certs, bound):
    t = bound.thumbprint
    keys = ["ipport=0.0.0.0:443", "ipport=[::]:443", "hostnameport=www.example.com:443"]
    for k in keys:
        cb.ok("add", "sslcert", k, "certhash=" + t)
    before = cb.bindings()
    renewed = certs.make(cn="www.example.com")
    cb.add_cert(renewed)
    cb.ok("update", "sslcert", "ipport=0.0.0.0:443", "certhash=" + renewed.thumbprint)
    after = cb.bindings()
    assert [b for b in after if b["key"] != "ipport=0.0.0.0:443"] == \
        [b for b in before if b["key"] != "ipport=0.0.0.0:443"]
    assert cb.binding("ipport=0.0.0.0:443")["certhash"] == renewed.thumbprint
    # delete cert names only the bindings still on the old certificate
    msg = cb.fails(1, "delete", "cert", t)
    assert "ipport=[::]:443" in msg and "ipport=0.0.0.0:443" not in msg


def test_update_missing_binding(cb, bound):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)
    cb.fails(1, "update", "sslcert", "ipport=0.0.0.0:8443", "reject=enable",
             match=["ipport=0.0.0.0:8443", "add sslcert"])
    cb.fails(1, "update", "sslcert", "hostnameport=nowhere.example.com:443",
             "certhash=" + t)


def test_update_on_empty_state(cb):
    cb.fails(1, "update", "sslcert", "ipport=0.0.0.0:443", "reject=enable")
    assert not cb.state.exists()


def test_update_malformed(cb, bound):
    t = bound.thumbprint
    key = "ipport=0.0.0.0:443"
    cb.ok("add", "sslcert", key, "certhash=" + t, "disabletls13=enable")
    cb.ok("add", "sslcert", "ccs=443", "ccspath=/srv/ccs")
    cb.fails(2, "update", "sslcert", key)  # nothing to change
    cb.fails(2, "update", "sslcert", key, "force=yes")
    cb.fails(2, "update", "sslcert", "reject=enable")
    cb.fails(2, "update", "sslcert", key, "certhash=" + "A" * 39)
    cb.fails(2, "update", "sslcert", key, "appid={bad}")
    cb.fails(2, "update", "sslcert", key, "backend=nohost")
    cb.fails(2, "update", "sslcert", key, "proxyprotocol=v9")
    cb.fails(2, "update", "sslcert", key, "reject=on")
    cb.fails(2, "update", "sslcert", key, "reject=enable", "reject=disable")
    cb.fails(2, "update", "sslcert", key, "frob=enable")
    cb.fails(2, "update", "sslcert", "ipport=0.0.0.0:0", "reject=enable")
    # the merged binding is checked too: both TLS versions off, ccspath on an IP binding
    cb.fails(2, "update", "sslcert", key, "disabletls12=enable", match="disabletls13")
    cb.fails(2, "update", "sslcert", key, "ccspath=/srv/ccs")
    cb.fails(2, "update", "sslcert", "ccs=443", "certhash=" + t)
    cb.fails(2, "update", "sslcert", "ccs=443", "ccspath=srv")
    # a malformed update of a missing binding is still malformed
    cb.fails(2, "update", "sslcert", "ipport=9.9.9.9:443", "reject=maybe")


def test_update_to_unknown_certificate(cb, bound):
    key = "ipport=0.0.0.0:443"
    cb.ok("add", "sslcert", key, "certhash=" + bound.thumbprint)
    cb.fails(1, "update", "sslcert", key, "certhash=" + "CD" * 20, match="CD" * 20)
    rc, out, err = cb.run("update", "sslcert", key, "certhash=" + "CD" * 20, "force=yes")
    assert rc == 0 and len(warnings(err)) == 1
    assert cb.binding(key)["certhash"] == "CD" * 20
    # an update that does not touch certhash does not re-check it
    cb.ok("update", "sslcert", key, "backend=127.0.0.1:80")


def test_update_ccs_binding(cb, bound, tmp_path):
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s/ccs/" % tmp_path)
    (b,) = cb.bindings()
    assert b["key"] == "ccs=443" and b["ccspath"] == "%s/ccs" % tmp_path
    assert b["certhash"] is None
    cb.ok("update", "sslcert", "ccs=443", "ccspath=/srv/other", "backend=127.0.0.1:81")
    b = cb.binding("ccs=443")
    assert b["ccspath"] == "/srv/other" and b["backend"] == "127.0.0.1:81"
    assert cb.ok("show", "sslcert", "ccs=443").splitlines()[1].split(":", 1)[1].strip() \
        == "/srv/other"


# -- delete sslcert ---------------------------------------------------------------------

def test_delete(cb, bound):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=[2001:db8::5]:443", "certhash=" + t)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)
    out = cb.ok("delete", "sslcert", "ipport=[2001:DB8:0::5]:443")
    assert out == "Deleted binding ipport=[2001:db8::5]:443.\n"
    assert [b["key"] for b in cb.bindings()] == ["ipport=0.0.0.0:443"]
    cb.fails(1, "delete", "sslcert", "ipport=[2001:db8::5]:443", match="ipport=[2001:db8::5]:443")
    # the certificate stays
    assert cb.certs()[0]["bindings"] == ["ipport=0.0.0.0:443"]


def test_delete_malformed(cb, bound):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    cb.fails(2, "delete", "sslcert")
    cb.fails(2, "delete", "sslcert", "ipport=0.0.0.0")
    cb.fails(2, "delete", "sslcert", "ipport=0.0.0.0:443", "ipport=0.0.0.0:443")
    cb.fails(2, "delete", "sslcert", "ipport=0.0.0.0:443", "hostnameport=a.example.com:443")
    cb.fails(2, "delete", "sslcert", "ipport=0.0.0.0:443", "force=yes")
    cb.fails(2, "delete", "sslcert", "ipport=0.0.0.0:443", "extra")
    cb.fails(2, "delete", "sslcert", "hostnameport=bad..name:443")


def test_delete_on_empty_state(cb):
    cb.fails(1, "delete", "sslcert", "ipport=0.0.0.0:443")
    assert not cb.state.exists()


# -- show sslcert -----------------------------------------------------------------------

def test_show(cb, bound, tmp_path):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)
    cb.ok("add", "sslcert", "hostnameport=*.example.com:443", "certhash=" + t)
    cb.ok("add", "sslcert", "ccs=8443", "ccspath=/srv/ccs")
    keys = [b["key"] for b in cb.bindings()]
    assert sorted(keys) == ["ccs=8443", "hostnameport=*.example.com:443", "ipport=0.0.0.0:443"]
    text = cb.ok("show", "sslcert")
    for k in keys:
        assert k + "\n" in text
    assert "certhash" in text and t in text and "/srv/ccs" in text
    cb.fails(1, "show", "sslcert", "ipport=0.0.0.0:8443", match="ipport=0.0.0.0:8443")
    cb.fails(1, "show", "sslcert", "hostnameport=www.example.com:443")
    cb.fails(2, "show", "sslcert", "ipport=0.0.0.0:99999")
    cb.fails(2, "show", "sslcert", "certhash=" + t)
    cb.fails(2, "show", "sslcert", "ipport=0.0.0.0:443", "ccs=8443")
    cb.fails(2, "show", "sslcert", "everything")


def test_show_one_on_empty_state(cb):
    cb.fails(1, "show", "sslcert", "ipport=0.0.0.0:443")
    assert not cb.state.exists()
