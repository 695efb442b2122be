"""unknown-cert (a binding whose thumbprint is not in the store) and ccs-missing (a
central-store folder that is missing or unreadable by the service user)."""

import os

import pytest

from checklib import IS_ROOT, SERVICE_USER, make_cert

root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root to test as the service user")


def test_unknown_cert(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    assert cb.findings(code="unknown-cert") == []
    ghost = make_cert(["www.example.com"])  # never imported
    err = cb.bind("ipport=0.0.0.0:8443", ghost, force=True)
    assert "warning" in err
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == "unknown-cert"]
    assert x["severity"] == "error" and x["bindings"] == ["ipport=0.0.0.0:8443"]
    assert ghost.thumbprint in x["message"]
    assert "certbind add cert" in x["message"]
    # and nothing else is claimed about a certificate nobody knows
    assert [y["code"] for y in f] == ["unknown-cert"]


def test_unknown_cert_after_forced_delete(cb):
    a, b = make_cert(["a.example.com"]), make_cert(["b.example.com"])
    cb.add_cert(a)
    cb.add_cert(b)
    cb.bind("ipport=0.0.0.0:443", a)
    cb.bind("ipport=0.0.0.0:8443", b)
    assert cb.check() == (0, [])
    cb.ok("delete", "cert", b.thumbprint, "force=yes")
    (x,) = cb.findings(code="unknown-cert")
    assert x["bindings"] == ["ipport=0.0.0.0:8443"]


def ccs_setup(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("ipport=0.0.0.0:8443", c)


def test_ccs_missing_folder(cb):
    ccs_setup(cb)
    present = cb.folder("present")
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % present)
    assert cb.findings(code="ccs-missing") == []
    missing = cb.base / "missing"
    cb.ok("add", "sslcert", "ccs=8443", "ccspath=%s" % missing)
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == "ccs-missing"]
    assert x["severity"] == "error" and x["bindings"] == ["ccs=8443"]
    assert str(missing) in x["message"] and "create it" in x["message"]
    # creating it fixes it
    os.mkdir(missing)
    assert cb.findings(code="ccs-missing") == []


@root_only
def test_ccs_folder_unreadable_by_the_service_user(cb):
    ccs_setup(cb)
    folder = cb.folder("private", mode=0o755)
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % folder)
    assert cb.findings(code="ccs-missing") == []
    os.chmod(folder, 0o700)  # root's: root can read it, the service user cannot
    (x,) = cb.findings(code="ccs-missing")
    assert x["bindings"] == ["ccs=443"]
    assert SERVICE_USER in x["message"]
