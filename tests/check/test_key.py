"""key-unusable: a bound certificate's key that is missing, not the certificate's, corrupt,
encrypted, or unreadable by the service user (tested as that user); and add/update sslcert
refusing to bind such a key unless force=yes."""

import json
import os
import pwd

import pytest

from checklib import IS_ROOT, SERVICE_USER, make_cert, new_key
from cryptography.hazmat.primitives import serialization

KEY = "key-unusable"
root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root to test as the service user")


def two_bound(cb):
    """Certificates a and b, each bound (a on 443, b on 8443, both with defaults)."""
    a, b = make_cert(["a.example.com"]), make_cert(["b.example.com"], key_type="rsa")
    cb.add_cert(a)
    cb.add_cert(b)
    cb.bind("ipport=0.0.0.0:443", a)
    cb.bind("hostnameport=a.example.com:443", a)
    cb.bind("ipport=0.0.0.0:8443", b)
    assert cb.check() == (0, [])
    return a, b


def replace_file(path, data):
    """Rewrites a stored key in place: same owner and mode, other bytes."""
    st = os.stat(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)


def only_finding(cb, cert):
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == KEY]
    assert x["severity"] == "error"
    assert cert.thumbprint in x["message"]
    assert "certbind add cert" in x["message"]  # the fix
    return x


def test_missing_key(cb):
    a, b = two_bound(cb)
    os.unlink(cb.key_path(a))
    x = only_finding(cb, a)
    # a's bindings, not b's (b is the nearest configuration without the problem)
    assert sorted(x["bindings"]) == ["hostnameport=a.example.com:443", "ipport=0.0.0.0:443"]
    assert b.thumbprint not in x["message"]


def test_key_replaced_by_another_key(cb):
    a, b = two_bound(cb)
    replace_file(cb.key_path(b), make_cert(["b.example.com"], key_type="rsa",
                                           key=new_key("rsa", fresh=True)).key_pem)
    x = only_finding(cb, b)
    assert x["bindings"] == ["ipport=0.0.0.0:8443"]
    assert "match" in x["message"]


def test_corrupt_and_encrypted_keys(cb):
    a, b = two_bound(cb)
    replace_file(cb.key_path(a), b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    replace_file(cb.key_path(b), b.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    rc, f = cb.check()
    assert rc == 1
    got = {t: x["bindings"] for x in f if x["code"] == KEY
           for t in (a.thumbprint, b.thumbprint) if t in x["message"]}
    assert sorted(got) == sorted([a.thumbprint, b.thumbprint]), f


def test_unbound_certificate_is_not_checked(cb):
    two_bound(cb)
    c = make_cert(["c.example.com"])
    cb.add_cert(c)
    os.unlink(cb.key_path(c))  # nobody uses c: no handshake can fail on it
    assert cb.findings(code=KEY) == []


@root_only
def test_unreadable_by_the_service_user(cb):
    a, b = two_bound(cb)
    kp = cb.key_path(a)
    svc = pwd.getpwnam(SERVICE_USER)
    # the nearest configuration without the problem: the key is the service user's, 0600
    st = os.stat(kp)
    assert st.st_uid == svc.pw_uid and st.st_mode & 0o777 == 0o600
    assert cb.findings(code=KEY) == []
    # root could still read it: only a test as the service user finds the problem
    os.chown(kp, 0, 0)
    os.chmod(kp, 0o600)
    x = only_finding(cb, a)
    assert sorted(x["bindings"]) == ["hostnameport=a.example.com:443", "ipport=0.0.0.0:443"]
    assert SERVICE_USER in x["message"]
    # giving it back fixes it
    os.chown(kp, svc.pw_uid, svc.pw_gid)
    assert cb.findings(code=KEY) == []


# -- add / update sslcert refuse a new key-unusable error -----------------------------------

def break_key(cb, cert):
    """Makes cert's key unusable by the service user: unreadable as root, else missing."""
    kp = cb.key_path(cert)
    if IS_ROOT:
        os.chown(kp, 0, 0)
        os.chmod(kp, 0o600)
    else:
        os.unlink(kp)


def bindings(cb):
    return json.loads(cb.ok("show", "sslcert", "--json"))["bindings"]


def test_add_refuses_an_unusable_key(cb):
    a, b = two_bound(cb)
    break_key(cb, b)
    before = bindings(cb)
    msg = cb.fails(1, "add", "sslcert", "hostnameport=b.example.com:8443",
                   "certhash=" + b.thumbprint)
    assert b.thumbprint in msg and "unusable" in msg and "force=yes" in msg
    if IS_ROOT:
        assert SERVICE_USER in msg
    assert bindings(cb) == before
    # the same binding to a usable key is accepted
    cb.bind("hostnameport=a.example.com:8443", a)
    # with force=yes it is added, with a warning
    err = cb.bind("hostnameport=b.example.com:8443", b, force=True)
    assert "warning" in err
    (x,) = cb.findings(code=KEY)
    assert "hostnameport=b.example.com:8443" in x["bindings"]


def test_update_refuses_an_unusable_key(cb):
    a, b = two_bound(cb)
    c = make_cert(["a.example.com"])
    cb.add_cert(c)
    break_key(cb, c)
    before = bindings(cb)
    msg = cb.fails(1, "update", "sslcert", "hostnameport=a.example.com:443",
                   "certhash=" + c.thumbprint)
    assert c.thumbprint in msg and "force=yes" in msg
    assert bindings(cb) == before
    assert cb.check() == (0, [])
    # updating to a usable key is fine; force=yes moves it to the broken one anyway
    d = make_cert(["a.example.com"])
    cb.add_cert(d)
    cb.ok("update", "sslcert", "hostnameport=a.example.com:443", "certhash=" + d.thumbprint)
    assert cb.check() == (0, [])
    rc, out, err = cb.run("update", "sslcert", "hostnameport=a.example.com:443",
                          "certhash=" + c.thumbprint, "force=yes")
    assert rc == 0 and "warning" in err, err
    (x,) = cb.findings(code=KEY)
    assert x["bindings"] == ["hostnameport=a.example.com:443"]


def test_a_batch_of_certificates_then_bindings_binds_all_and_still_refuses_a_broken_key(cb):
    """A batch that adds its certificates first and binds them after, further back than the
    batch's ring of the last 64 it wrote (70 here), binds every one: which files the batch
    wrote is then read from its own file table, and their keys are trusted once one passed
    the test as the service user. A certificate the batch did not write, whose key that user
    cannot use, still fails its line and the whole batch. (The test processes it saves are
    a cost, measured in BENCHMARKS.md; this checks that nothing broken gets through.)"""
    shared = new_key()
    certs = [make_cert(["g%d.example.com" % i], key=shared) for i in range(100)]
    broken = make_cert(["broken.example.com"])
    cb.add_cert(broken)
    break_key(cb, broken)
    adds = ["add cert %s\n" % cb.write("g%d.pem" % i, c.pem + c.key_pem)
            for i, c in enumerate(certs)]
    binds = ["add sslcert hostnameport=g%d.example.com:443 certhash=%s\n" % (i, c.thumbprint)
             for i, c in enumerate(certs)]
    cb.ok("-f", cb.write("grouped.txt", "".join(adds[:70] + binds[:70]).encode()))
    assert len(bindings(cb)) == 70
    before = bindings(cb)
    bad = "add sslcert hostnameport=broken.example.com:443 certhash=%s\n" % broken.thumbprint
    batch = cb.write("grouped-bad.txt", "".join(adds[70:] + binds[70:] + [bad]).encode())
    msg = cb.fails(1, "-f", batch)
    assert msg.startswith("%s:%d: " % (batch, 61)) and broken.thumbprint in msg, msg
    assert "unusable" in msg, msg
    assert bindings(cb) == before
    cb.ok("-f", cb.write("grouped-rest.txt", "".join(adds[70:] + binds[70:]).encode()))
    assert len(bindings(cb)) == 100
    assert cb.findings(code=KEY) == []  # the broken certificate is bound by nothing


@pytest.mark.skipif(not IS_ROOT, reason="files are given to the service user only as root")
def test_a_batch_gives_every_file_it_writes_to_the_service_user(cb):
    """As root with a service user set, a batch creates each certificate and key file as that
    user's (the user is looked up once a batch, not once a file): every file it wrote, the
    last as the first, belongs to the service user, and the key files stay 0600."""
    u = pwd.getpwnam(SERVICE_USER)
    shared = new_key()
    certs = [make_cert(["own%d.example.com" % i], key=shared) for i in range(5)]
    lines = ["add cert %s\n" % cb.write("own%d.pem" % i, c.pem + c.key_pem)
             for i, c in enumerate(certs)]
    cb.ok("-f", cb.write("own.txt", "".join(lines).encode()))
    shown = json.loads(cb.ok("show", "cert", "--json"))["certs"]
    assert len(shown) == 5
    for e in shown:
        st = os.stat(e["key_path"])
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (u.pw_uid, u.pw_gid, 0o600), e
    written = list((cb.state / "certs").iterdir())
    assert len(written) == 5
    for f in written:
        assert (f.stat().st_uid, f.stat().st_gid) == (u.pw_uid, u.pw_gid), f
