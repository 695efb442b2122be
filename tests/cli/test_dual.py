"""Bindings with two certificates, certhash=T1,T2 (bindings.md section 9): one ECDSA and one
RSA certificate for the same names. add/update put the ECDSA one first; show, show cert,
resolve and delete cert see both; malformed pairs are refused and change nothing."""

import pytest

from conftest import each

KEY = "hostnameport=www.example.com:443"


@pytest.fixture
def pair(cb, certs):
    names = ["www.example.com", "*.example.com"]
    e = certs.make(cn="www.example.com", sans=names, key_type="ec")
    r = certs.make(cn="www.example.com", sans=list(reversed(names)), key_type="rsa")
    cb.add_cert(e, native=True)
    cb.add_cert(r, native=True)
    return e.thumbprint, r.thumbprint


def test_add_stores_the_ecdsa_certificate_first_in_any_given_order(cb, pair):
    e, r = pair
    for given in ("%s,%s" % (r, e), "%s,%s" % (e, r), "%s , %s" % (r.lower(), e.lower())):
        assert cb.ok("add", "sslcert", KEY, "certhash=" + given) == "Added binding %s.\n" % KEY
        b = cb.binding(KEY)
        assert b["certhash"] == "%s,%s" % (e, r), b
        assert b["certhashes"] == [e, r], b
        text = cb.ok("show", "sslcert", KEY)
        assert "certhash              : %s,%s\n" % (e, r) in text, text
        cb.ok("delete", "sslcert", KEY)


def test_show_output_is_a_valid_certhash_value(cb, pair):
    """certhash of show --json can be given back as it is."""
    e, r = pair
    cb.ok("add", "sslcert", KEY, "certhash=%s,%s" % (r, e))
    value = cb.binding(KEY)["certhash"]
    cb.ok("delete", "sslcert", KEY)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + value)
    assert cb.binding("ipport=0.0.0.0:443")["certhash"] == value


def test_a_binding_with_one_certificate_keeps_its_shape(cb, pair):
    e, _ = pair
    cb.ok("add", "sslcert", KEY, "certhash=" + e)
    b = cb.binding(KEY)
    assert b["certhash"] == e and "certhashes" not in b, b


def test_update_changes_to_one_certificate_and_back(cb, pair):
    e, r = pair
    cb.ok("add", "sslcert", KEY, "certhash=%s,%s" % (e, r))
    cb.ok("update", "sslcert", KEY, "certhash=" + r)
    assert cb.binding(KEY)["certhash"] == r
    # r's only binding now names it once; e is free to delete
    assert cb.ok("delete", "cert", e).startswith("Deleted")
    cb.fails(1, "update", "sslcert", KEY, "certhash=%s,%s" % (r, e), match=["not in the store", e])
    assert cb.binding(KEY)["certhash"] == r


def test_both_certificates_are_in_use(cb, pair):
    """show cert names the binding under each; delete cert refuses either."""
    e, r = pair
    cb.ok("add", "sslcert", KEY, "certhash=%s,%s" % (e, r))
    for thumb in (e, r):
        (c,) = cb.json("show", "cert", thumb)["certs"]
        assert c["bindings"] == [KEY], c
        cb.fails(1, "delete", "cert", thumb, match=["used by 1 binding", KEY])


def test_resolve_names_both(cb, pair):
    e, r = pair
    cb.ok("add", "sslcert", KEY, "certhash=%s,%s" % (r, e))
    res = cb.json("resolve", "ip=192.0.2.1", "port=443", "sni=www.example.com")
    assert res["certhash"] == e and res["certhashes"] == [e, r], res
    assert res["usable"] is True, res
    text = cb.ok("resolve", "ip=192.0.2.1", "port=443", "sni=www.example.com")
    assert "Certificate : %s\n" % e in text and r in text, text


def test_malformed_pairs_are_refused_with_exit_2(cb, pair):
    e, r = pair
    cases = [
        ("%s," % e, "missing"),
        (",%s" % r, "missing"),
        (",", "missing"),
        ("%s, " % e, "missing"),
        ("%s,%s,%s" % (e, r, e), "not more"),
        ("%s,,%s" % (e, r), "not more"),
        ("%s,%s" % (e, e), "twice"),
        ("%s,%s" % (e, e.lower()), "twice"),
        ("%s %s" % (e, r), "thumbprint"),
        ("%s;%s" % (e, r), "thumbprint"),
        ("%s,%s" % (e, r[:20]), "thumbprint"),
    ]

    def check(case):
        value, hint = case
        cb.fails(2, "add", "sslcert", KEY, "certhash=" + value, match=hint)
    each(cases, check)
    cb.ok("add", "sslcert", KEY, "certhash=" + e)

    def check_update(case):
        value, hint = case
        cb.fails(2, "update", "sslcert", KEY, "certhash=" + value, match=hint)
    each(cases, check_update)
    assert cb.binding(KEY)["certhash"] == e


def test_two_certificates_of_one_key_type_are_refused_with_exit_1(cb, certs, pair):
    """Well-formed words, but the store's certificates cannot pair: the operation fails
    (exit 1, as for an unknown certificate), even with force=yes."""
    e, r = pair
    e2 = certs.make(cn="www.example.com", sans=["www.example.com", "*.example.com"])
    r2 = certs.make(cn="www.example.com", sans=["www.example.com"], key_type="rsa")
    cb.add_cert(e2, native=True)
    cb.add_cert(r2, native=True)
    for a, b, kind in ((e, e2.thumbprint, "ECDSA"), (r, r2.thumbprint, "RSA")):
        cb.fails(1, "add", "sslcert", KEY, "certhash=%s,%s" % (a, b), match=["both have %s" % kind, KEY])
        cb.fails(1, "add", "sslcert", KEY, "certhash=%s,%s" % (a, b), "force=yes", match="one ECDSA and one RSA")
    cb.ok("add", "sslcert", KEY, "certhash=" + e)
    cb.fails(1, "update", "sslcert", KEY, "certhash=%s,%s" % (e, e2.thumbprint), match="both have ECDSA")
    assert cb.binding(KEY)["certhash"] == e


def test_unknown_second_certificate_is_refused(cb, pair):
    e, _ = pair
    missing = "AB" * 20
    cb.fails(1, "add", "sslcert", KEY, "certhash=%s,%s" % (e, missing),
             match=["unknown-cert", missing])


def test_pair_with_different_names_is_refused_unless_forced(cb, certs, pair):
    e, _ = pair
    other = certs.make(cn="other.example.net", key_type="rsa")
    cb.add_cert(other, native=True)
    cb.fails(1, "add", "sslcert", "ipport=0.0.0.0:443",
             "certhash=%s,%s" % (e, other.thumbprint), match=["dual-cert-mismatch", "force=yes"])
    rc, out, err = cb.run("add", "sslcert", "ipport=0.0.0.0:443",
                          "certhash=%s,%s" % (e, other.thumbprint), "force=yes")
    assert rc == 0 and "warning: dual-cert-mismatch" in err, err


def test_pair_is_refused_on_ccs_and_with_acme(cb, pair, tmp_path):
    e, r = pair
    cb.fails(2, "add", "sslcert", "ccs=443", "ccspath=%s" % tmp_path,
             "certhash=%s,%s" % (e, r), match="drop certhash")
    cb.fails(2, "add", "sslcert", KEY, "certhash=%s,%s" % (e, r), "acme=enable",
             match="either certhash= or acme=enable")
    cb.ok("add", "sslcert", KEY, "certhash=%s,%s" % (e, r))
    cb.fails(2, "update", "sslcert", KEY, "acme=enable", match="acme=enable obtains one certificate")


def test_help_documents_the_pair(cb):
    out = cb.ok("--help", state=False)
    assert "certhash=T1,T2" in out and "ECDSA" in out and "RSA" in out, out
