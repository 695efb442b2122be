"""add cert / show cert / delete cert (bindings.md sections 3 and 4)."""

import os
import stat

import pytest

from conftest import WARN, warnings

CERT_FIELDS = ["thumbprint", "sha256", "subject", "names", "not_before", "not_after",
               "key_type", "key_path", "bindings"]


def assert_key_file(cb, c, entry):
    key_path = entry["key_path"]
    assert os.path.isabs(key_path) and key_path.startswith(str(cb.state) + "/")
    st = os.stat(key_path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    with open(key_path, "rb") as f:
        data = f.read()
    assert b"PRIVATE KEY" in data and b"ENCRYPTED" not in data


# -- add cert: the formats --------------------------------------------------------------

def test_add_ec_san_cert(cb, certs):
    c = certs.make(cn="www.example.com", sans=["www.example.com", "Example.COM", "api.example.com"])
    rc, out, err = cb.run("add", "cert", c.cert_path, "key=%s" % c.key_path)
    assert rc == 0 and out == c.thumbprint + "\n"
    assert "error" not in err
    (entry,) = cb.certs()
    assert list(entry) == CERT_FIELDS
    assert entry["thumbprint"] == c.thumbprint
    assert entry["sha256"] == c.sha256
    assert entry["subject"] == "CN=www.example.com"
    assert entry["names"] == ["www.example.com", "example.com", "api.example.com"]
    assert entry["not_before"] == c.not_before
    assert entry["not_after"] == c.not_after
    assert entry["key_type"] == "EC-P256"
    assert entry["bindings"] == []
    assert_key_file(cb, c, entry)


def test_add_rsa_cn_only_cert(cb, certs):
    c = certs.make(cn="Legacy.Example.NET", sans=[], key_type="rsa")
    cb.add_cert(c)
    (entry,) = cb.certs()
    assert entry["names"] == ["legacy.example.net"]
    assert entry["key_type"] == "RSA-2048"
    assert entry["subject"] == "CN=Legacy.Example.NET"
    assert_key_file(cb, c, entry)


def test_add_cert_without_dns_names(cb, certs):
    c = certs.make(cn="Internal Service", sans=[])
    cb.add_cert(c)
    assert cb.certs()[0]["names"] == []
    assert "Names               : (none)" in cb.ok("show", "cert")


def test_add_wildcard_cert(cb, certs):
    c = certs.make(cn="*.example.org", sans=["*.example.org", "example.org"])
    cb.add_cert(c)
    assert cb.certs()[0]["names"] == ["*.example.org", "example.org"]


def test_add_expired_cert_is_allowed_and_shown_expired(cb, certs):
    import datetime
    now = datetime.datetime.utcnow().replace(microsecond=0)
    c = certs.make(cn="old.example.com", not_before=now - datetime.timedelta(days=400),
                   not_after=now - datetime.timedelta(days=10))
    cb.add_cert(c)
    (entry,) = cb.certs()
    assert entry["not_after"] == c.not_after
    out = cb.ok("show", "cert", c.thumbprint)
    assert "expired" in out


@pytest.mark.parametrize("ca_first", [False, True])
def test_add_chain_takes_the_leaf(cb, certs, ca_first):
    leaf = certs.chain(key_type="rsa", ca_first=ca_first)
    rc, out, err = cb.run("add", "cert", leaf.chain_path, "key=%s" % leaf.key_path)
    assert rc == 0 and out == leaf.thumbprint + "\n", err
    (entry,) = cb.certs()
    assert entry["thumbprint"] == leaf.thumbprint != leaf.ca.thumbprint
    assert entry["subject"] == "CN=www.example.com"
    assert "Chain certificates  : 1" in cb.ok("show", "cert")


def test_add_cert_and_key_in_one_file(cb, certs):
    c = certs.make(key_type="rsa")
    rc, out, err = cb.run("add", "cert", c.bundle_path)
    assert rc == 0 and out == c.thumbprint + "\n"
    assert_key_file(cb, c, cb.certs()[0])


@pytest.mark.parametrize("legacy", [False, True], ids=["aes", "legacy-rc2"])
def test_add_pkcs12_with_password(cb, certs, legacy):
    leaf = certs.chain(key_type="ec")
    pfx, pw = certs.pkcs12(leaf, "s3cret pass", extra=[leaf.ca], legacy=legacy)
    rc, out, err = cb.run("add", "cert", pfx, "password-file=%s" % pw)
    assert rc == 0 and out == leaf.thumbprint + "\n", err
    (entry,) = cb.certs()
    assert entry["key_type"] == "EC-P256"
    assert_key_file(cb, leaf, entry)
    assert "Chain certificates  : 1" in cb.ok("show", "cert", leaf.thumbprint)


def test_pkcs12_errors(cb, certs, bound):
    c = certs.make(key_type="rsa")
    pfx, pw = certs.pkcs12(c, "right")
    wrong = certs.password_file("wrong")
    assert "password" in cb.fails(2, "add", "cert", pfx)
    assert "password" in cb.fails(2, "add", "cert", pfx, "password-file=%s" % wrong)
    cb.fails(2, "add", "cert", pfx, "password-file=%s" % pw, "key=%s" % c.key_path)


def test_add_encrypted_pem_key(cb, certs):
    c = certs.make(key_password="correct horse")
    pw = certs.password_file("correct horse")
    assert b"ENCRYPTED" in c.key_path.read_bytes()
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % c.key_path, match="password-file")
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % c.key_path,
             "password-file=%s" % certs.password_file("battery staple"), match="password")
    assert not cb.state.exists()
    rc, out, err = cb.run("add", "cert", c.cert_path, "key=%s" % c.key_path,
                          "password-file=%s" % pw)
    assert rc == 0 and out == c.thumbprint + "\n", err
    # Stored decrypted, 0600: serve needs no password.
    assert_key_file(cb, c, cb.certs()[0])


def test_readd_is_idempotent(cb, certs, bound):
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + bound.thumbprint)
    before = cb.snapshot()
    for path in (bound.cert_path, bound.bundle_path):
        args = ["add", "cert", path] + (["key=%s" % bound.key_path] if path == bound.cert_path
                                        else [])
        rc, out, err = cb.run(*args)
        assert rc == 0 and out == bound.thumbprint + "\n"
        assert "error" not in err and "already" in err
    assert cb.snapshot() == before


def test_two_certs_listed_in_thumbprint_order(cb, certs):
    a, b = certs.make(cn="a.example.com"), certs.make(cn="b.example.com", key_type="rsa")
    cb.add_cert(a)
    cb.add_cert(b)
    assert [e["thumbprint"] for e in cb.certs()] == sorted([a.thumbprint, b.thumbprint])
    assert cb.json("show", "cert", b.thumbprint)["certs"][0]["names"] == ["b.example.com"]


# -- add cert: bad input (exit 2, store unchanged) ---------------------------------------

def test_add_cert_bad_input(cb, certs, bound, tmp_path):
    c = certs.make()
    other = certs.make()
    text = certs.write("notes.txt", "this is not a certificate\n")
    empty = certs.write("empty.pem", b"")
    garbage = certs.write("garbage.pfx", os.urandom(600))
    key_only = certs.write("keyonly.pem", c.key_pem())
    bad_pem = certs.write("bad.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n"
                          "-----END CERTIFICATE-----\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    missing = tmp_path / "missing.pem"
    cb.fails(2, "add", "cert")  # missing FILE
    cb.fails(2, "add", "cert", missing, match="missing.pem")
    cb.fails(2, "add", "cert", folder)
    cb.fails(2, "add", "cert", text)
    cb.fails(2, "add", "cert", empty)
    cb.fails(2, "add", "cert", garbage)
    cb.fails(2, "add", "cert", key_only)
    cb.fails(2, "add", "cert", bad_pem, "key=%s" % c.key_path)
    cb.fails(2, "add", "cert", c.cert_path)  # no key anywhere
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % missing)
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % text)
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % other.key_path, match="does not match")
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % c.key_path,
             "password-file=%s" % missing)
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % c.key_path, "pasword-file=x")
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % c.key_path, "force=yes")
    cb.fails(2, "add", "cert", c.cert_path, c.key_path)  # two files
    assert [e["thumbprint"] for e in cb.certs()] == [bound.thumbprint]


def test_add_cert_bad_input_does_not_create_the_store(cb, certs):
    c, other = certs.make(), certs.make()
    cb.fails(2, "add", "cert", c.cert_path, "key=%s" % other.key_path)
    cb.fails(2, "add", "cert", c.cert_path)
    assert not cb.state.exists()


# -- show cert --------------------------------------------------------------------------

def test_show_cert_text_and_thumbprint_forms(cb, bound):
    spaced = " ".join(bound.thumbprint[i:i + 2] for i in range(0, 40, 2)).lower()
    coloned = ":".join(bound.thumbprint[i:i + 2] for i in range(0, 40, 2))
    for form in (bound.thumbprint, bound.thumbprint.lower(), spaced, coloned):
        (entry,) = cb.json("show", "cert", form)["certs"]
        assert entry["thumbprint"] == bound.thumbprint
    out = cb.ok("show", "cert", bound.thumbprint.lower())
    assert "Thumbprint (SHA-1)  : " + bound.thumbprint in out
    assert "SHA-256             : " + bound.sha256 in out
    assert "Key type            : EC-P256" in out
    assert "www.example.com, *.example.com" in out


def test_show_cert_errors(cb, bound):
    cb.fails(1, "show", "cert", "AB" * 20, match="AB" * 20)
    cb.fails(2, "show", "cert", "AB" * 19)
    cb.fails(2, "show", "cert", "XY" * 20)
    cb.fails(2, "show", "cert", bound.thumbprint + "00")
    cb.fails(2, "show", "cert", bound.thumbprint, "force=yes")
    cb.fails(2, "show", "cert", bound.thumbprint, bound.thumbprint)


def test_show_cert_lists_bindings_canonically(cb, bound):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "hostnameport=WWW.Example.COM.:443", "certhash=" + t.lower())
    cb.ok("add", "sslcert", "ipport=[::FFFF:192.0.2.7]:8443", "certhash=" + t)
    cb.ok("add", "sslcert", "ipport=[2001:DB8:0:0::5]:9443", "certhash=" + t)
    (entry,) = cb.certs()
    assert sorted(entry["bindings"]) == sorted([
        "hostnameport=www.example.com:443", "ipport=192.0.2.7:8443",
        "ipport=[2001:db8::5]:9443"])


# -- delete cert ------------------------------------------------------------------------

def test_delete_cert(cb, certs, bound):
    other = certs.make(cn="other.example.com")
    cb.add_cert(other)
    (entry,) = [e for e in cb.certs() if e["thumbprint"] == bound.thumbprint]
    cert_files = list((cb.state / "certs").iterdir())
    assert len(cert_files) == 2
    out = cb.ok("delete", "cert", bound.thumbprint.lower())
    assert bound.thumbprint in out
    assert [e["thumbprint"] for e in cb.certs()] == [other.thumbprint]
    assert not os.path.exists(entry["key_path"])
    assert len(list((cb.state / "certs").iterdir())) == 1
    cb.fails(1, "show", "cert", bound.thumbprint)
    # And it can come back.
    cb.add_cert(bound)


def test_delete_cert_errors(cb, bound):
    cb.fails(1, "delete", "cert", "AB" * 20, match="AB" * 20)
    cb.fails(2, "delete", "cert")
    cb.fails(2, "delete", "cert", "not-a-thumbprint")
    cb.fails(2, "delete", "cert", bound.thumbprint, "force=maybe")
    cb.fails(2, "delete", "cert", bound.thumbprint, "forced=yes")
    cb.fails(2, "delete", "cert", bound.thumbprint, bound.thumbprint)


def test_delete_cert_on_empty_state(cb):
    cb.fails(1, "delete", "cert", "AB" * 20)
    assert not cb.state.exists()


def test_delete_cert_in_use(cb, certs, bound):
    t = bound.thumbprint
    keys = ["hostnameport=www.example.com:443", "ipport=[2001:db8::5]:9443",
            "ipport=0.0.0.0:443"]
    for k in keys:
        cb.ok("add", "sslcert", k, "certhash=" + t)
    other = certs.make(cn="other.example.com")
    cb.add_cert(other)
    cb.ok("add", "sslcert", "ipport=0.0.0.0:8443", "certhash=" + other.thumbprint)
    msg = cb.fails(1, "delete", "cert", t, match="force=yes")
    for k in keys:
        assert k in msg
    assert "0.0.0.0:8443" not in msg
    cb.fails(1, "delete", "cert", t, "force=no")
    rc, out, err = cb.run("delete", "cert", t, "force=yes")
    assert rc == 0 and t in out
    assert "error" not in err
    warned = warnings(err)
    assert len(warned) == len(keys)
    for k in keys:
        assert any(k in w for w in warned), (k, warned)
    assert [e["thumbprint"] for e in cb.certs()] == [other.thumbprint]
    # The broken bindings stay (pointing at the old thumbprint) and resolve as unusable.
    assert sorted(b["key"] for b in cb.bindings()) == sorted(keys + ["ipport=0.0.0.0:8443"])
    r = cb.json("resolve", "ip=192.0.2.1", "port=443")
    assert r["binding"] == "ipport=0.0.0.0:443" and r["usable"] is False


@pytest.mark.parametrize("n", [12, 40])
def test_delete_cert_in_use_by_many(cb, bound, n):
    t = bound.thumbprint
    keys = ["hostnameport=host%02d.example.com:443" % i for i in range(n)]
    for k in keys:  # setup: no need to run these under valgrind
        assert cb.run("add", "sslcert", k, "certhash=" + t, native=True)[0] == 0
    msg = cb.fails(1, "delete", "cert", t)
    assert "%d bindings" % n in msg
    listed = msg.split("(", 1)[1].split(")", 1)[0]
    if n == 12:
        assert listed == ", ".join(keys)  # all of them
    else:
        # as many whole keys as fit, then how many more and where to see them
        shown, more = listed.split(" and ", 1)
        shown = shown.split(", ")
        assert shown == keys[:len(shown)] and len(shown) >= 5
        assert more.startswith("%d more" % (n - len(shown))) and t in more
    rc, out, err = cb.run("delete", "cert", t, "force=yes")
    assert rc == 0
    for k in keys:
        assert any(k in w for w in warnings(err)), k
    assert all(l.startswith(WARN) for l in err.splitlines())
