"""store-damaged: a binding row that cannot be read breaks only itself, and check names it;
address-not-local: an IP binding on an address this machine does not have."""

import sqlite3

from checklib import make_cert


def _db(cb):
    return sqlite3.connect(str(cb.state / "certbind.db"))


def _insert(cb, key, certhash):
    db = _db(cb)
    with db:
        db.execute("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) VALUES(?, ?, '', '', '', 0, 0)", (key, certhash))
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
    db.close()


def test_damaged_row_with_readable_key_is_an_error_naming_it(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("hostnameport=www.example.com:443", c)
    _insert(cb, "hostnameport=bad.example.com:443", "not-a-thumbprint")
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == "store-damaged"]
    assert x["severity"] == "error"
    assert x["bindings"] == ["hostnameport=bad.example.com:443"]
    assert "certbind delete sslcert hostnameport=bad.example.com:443" in x["message"]
    # The damaged binding is not also reported as referring to an unknown certificate,
    # and the healthy one has no error of its own.
    assert [x for x in f if x["code"] == "unknown-cert"] == []
    assert not [x for x in f if x["severity"] == "error" and
                x["bindings"][0] == "hostnameport=www.example.com:443"]


def test_damaged_row_with_unreadable_key_is_reported(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("hostnameport=www.example.com:443", c)
    _insert(cb, "hostnameport=bad..name:443", c.thumbprint)
    (x,) = cb.findings(code="store-damaged")
    assert x["bindings"] == ["hostnameport=bad..name:443"]
    assert "backup" in x["message"]


def test_ip_binding_on_an_address_not_on_this_machine_is_a_warning(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=192.0.2.7:443", c, force=True)  # TEST-NET-1: on no interface here
    cb.bind("ipport=127.0.0.2:443", c)  # loopback: local
    (x,) = cb.findings(code="address-not-local")
    assert x["severity"] == "warning"
    assert x["bindings"] == ["ipport=192.0.2.7:443"]
    assert "0.0.0.0:443" in x["message"]
