"""clientca=FILE on add / update / show sslcert and resolve (design section 9): the file must
exist, parse and hold a CA certificate, or the command fails with exit 2 and changes
nothing; the path is stored absolute; `none` removes it."""

import os

import pytest

from conftest import each


@pytest.fixture
def ca(certs):
    """A CA for client certificates, its PEM file, and a leaf it issued."""
    c = certs.make(cn="clients CA", sans=[], ca=True, name="clients-ca")
    c.leaf = certs.make(cn="alice", sans=[], issuer=c, name="alice")
    return c


def test_add_stores_the_path_and_show_prints_it(cb, bound, ca):
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint,
          "clientca=%s" % ca.cert_path)
    assert cb.binding("hostnameport=www.example.com:443")["clientca"] == str(ca.cert_path)
    text = cb.ok("show", "sslcert", "hostnameport=www.example.com:443")
    assert "clientca" in text and str(ca.cert_path) in text
    r = cb.json("resolve", "ip=127.0.0.1", "port=443", "sni=www.example.com")
    assert r["clientca"] == str(ca.cert_path) and r["usable"] is True


def test_relative_path_is_stored_absolute(cb, bound, ca):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint,
          "clientca=%s" % ca.cert_path.name, cwd=ca.cert_path.parent)
    assert cb.binding("ipport=0.0.0.0:443")["clientca"] == str(ca.cert_path)


def test_update_sets_changes_and_removes_it(cb, bound, ca, certs):
    key = "ipport=0.0.0.0:443"
    cb.ok("add", "sslcert", key, "certhash=" + bound.thumbprint, "backend=127.0.0.1:8080")
    assert cb.binding(key)["clientca"] is None
    cb.ok("update", "sslcert", key, "clientca=%s" % ca.cert_path)
    assert cb.binding(key)["clientca"] == str(ca.cert_path)
    other = certs.make(cn="other CA", sans=[], ca=True, name="other-ca")
    cb.ok("update", "sslcert", key, "backend=127.0.0.1:9090")
    assert cb.binding(key)["clientca"] == str(ca.cert_path)  # not given: kept
    cb.ok("update", "sslcert", key, "clientca=%s" % other.cert_path)
    assert cb.binding(key)["clientca"] == str(other.cert_path)
    cb.ok("update", "sslcert", key, "clientca=none")
    assert cb.binding(key)["clientca"] is None


def test_a_bundle_with_a_leaf_in_it_notes_the_leaf_is_not_trusted(cb, bound, ca, certs):
    bundle = certs.write("bundle.pem", ca.pem + ca.leaf.pem)
    rc, out, err = cb.run("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint,
                          "clientca=%s" % bundle)
    assert rc == 0, err
    assert "not a CA and is not trusted" in err, err


def test_bad_files_are_refused_with_exit_2_and_nothing_stored(cb, bound, ca, certs, world_tmp):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    folder = world_tmp / "cas"
    folder.mkdir()
    cases = [
        (certs.path("missing.pem"), "no such file"),
        (folder, "folder"),
        (certs.write("garbage.pem", "just text\n"), "not PEM"),
        (certs.write("empty.pem", b""), "not PEM"),
        (certs.write("pubkey.pem", b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD"
                     b"QgAE\n-----END PUBLIC KEY-----\n"), "holds no certificate"),
        (certs.write("key.pem", ca.key_pem()), "private key"),
        (ca.leaf.cert_path, "no CA certificate"),
        (certs.write("cut.pem", ca.pem[:-60]), "damaged"),
        (certs.write("badb64.pem", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
         "damaged"),
        (certs.write("ca-and-key.pem", ca.pem + ca.key_pem()), "private key"),
    ]

    def check(case):
        path, why = case
        for verb, key in (("add", "hostnameport=www.example.com:443"),
                          ("update", "ipport=0.0.0.0:443")):
            args = [verb, "sslcert", key, "clientca=%s" % path]
            if verb == "add":
                args.append("certhash=" + bound.thumbprint)
            msg = cb.fails(2, *args, match="clientca=")
            assert why in msg, msg
    each(cases, check)


def test_clientca_syntax_errors(cb, bound):
    cb.fails(2, "add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint,
             "clientca=/etc/", match="absolute path")
