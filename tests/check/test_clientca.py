"""clientca-unusable: a binding's client CA file (clientca=FILE) that serve could not use:
gone, unreadable by the service user (tested as that user), or no longer a PEM file of CA
certificates. One finding per file, naming the bindings that use it (the first 20 in key
order, as every finding lists them: check holds no list of every binding)."""

import os

import pytest

from checklib import IS_ROOT, SERVICE_USER, make_cert

CODE = "clientca-unusable"
root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root to test as the service user")


def bind_three(cb):
    """Two bindings share a CA file, a third has its own; check finds nothing."""
    ca = make_cert([], cn="clients CA", ca=True)
    other = make_cert([], cn="other clients CA", ca=True)
    files = cb.folder("cas")
    shared, own = files / "shared.pem", files / "own.pem"
    shared.write_bytes(ca.pem)
    own.write_bytes(other.pem)
    for p in (shared, own):
        os.chmod(p, 0o644)
    leaf = make_cert(["a.example.com", "b.example.com"])
    cb.add_cert(leaf)
    cb.bind("hostnameport=a.example.com:443", leaf, clientca=shared)
    cb.bind("hostnameport=b.example.com:443", leaf, clientca=shared)
    cb.bind("ipport=0.0.0.0:443", leaf, clientca=own)
    assert cb.findings(code=CODE) == []
    return shared, own


def the_finding(cb, path):
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == CODE]
    assert x["severity"] == "error"
    assert str(path) in x["message"]
    assert "PEM file of CA certificates" in x["message"]  # the fix
    return x


def test_missing_file(cb):
    shared, own = bind_three(cb)
    os.unlink(shared)
    x = the_finding(cb, shared)
    assert sorted(x["bindings"]) == ["hostnameport=a.example.com:443",
                                     "hostnameport=b.example.com:443"]
    assert str(own) not in x["message"]


def test_many_users_named_up_to_twenty(cb):
    """25 bindings share a missing CA file: one finding, its first 20 bindings in key order,
    on the first one's port."""
    ca = make_cert([], cn="clients CA", ca=True)
    path = cb.folder("cas") / "many.pem"
    path.write_bytes(ca.pem)
    os.chmod(path, 0o644)
    names = ["h%02d.example.com" % i for i in range(25)]
    leaf = make_cert(names)
    cb.add_cert(leaf)
    keys = []
    for i, name in enumerate(names):
        port = 8443 if i % 2 else 443
        keys.append("hostnameport=%s:%d" % (name, port))
        cb.bind(keys[-1], leaf, clientca=path)
    cb.bind("ipport=0.0.0.0:443", leaf)
    cb.bind("ipport=0.0.0.0:8443", leaf)
    assert cb.findings(code=CODE) == []
    os.unlink(path)
    x = the_finding(cb, path)
    assert x["bindings"] == sorted(keys)[:20]
    assert len(cb.findings(code=CODE)) == 1


@pytest.mark.parametrize("content,why", [
    (b"not a certificate\n", "not PEM"),
    (b"", "not PEM"),
    (make_cert(["leaf.example.com"]).pem, "no CA certificate"),
], ids=["garbage", "empty", "a leaf, not a CA"])
def test_file_no_longer_holds_a_ca(cb, content, why):
    _, own = bind_three(cb)
    own.write_bytes(content)
    x = the_finding(cb, own)
    assert x["bindings"] == ["ipport=0.0.0.0:443"]
    assert why in x["message"]


def test_replaced_by_a_folder(cb):
    _, own = bind_three(cb)
    os.unlink(own)
    own.mkdir()
    x = the_finding(cb, own)
    assert "folder" in x["message"]


@root_only
def test_unreadable_by_the_service_user(cb):
    _, own = bind_three(cb)
    os.chmod(own, 0o600)  # root's: the CLI (root) reads it, serve (the service user) cannot
    x = the_finding(cb, own)
    assert SERVICE_USER in x["message"]
    assert x["bindings"] == ["ipport=0.0.0.0:443"]
    os.chmod(own, 0o644)
    assert cb.findings(code=CODE) == []
