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


# -- rows written by other means, and check's own temporary file ---------------------------

def db_exec(cb, sql, *params):
    """Changes the store as another program would (serve and the CLI read what it wrote)."""
    import sqlite3
    con = sqlite3.connect(str(cb.state / "certbind.db"), timeout=60)
    try:
        con.execute(sql, params)
        con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation'")
        con.commit()
    finally:
        con.close()


def test_certhash_spelt_otherwise_still_names_its_certificate(cb):
    """A binding row whose certhash is lower case (as a hand-edited store or another writer
    may hold it) uses its certificate all the same: serve serves it, so check reports the
    certificate's expiry and names that binding."""
    from checklib import days, now
    ok = make_cert(["www.example.com"])
    old = make_cert(["old.example.com"], not_before=now() - days(30), not_after=now() - days(1))
    cb.add_cert(ok)
    cb.add_cert(old)
    cb.bind("ipport=0.0.0.0:443", ok)
    cb.bind("hostnameport=old.example.com:443", old, force=True)
    db_exec(cb, "UPDATE bindings SET certhash = lower(certhash) WHERE key = ?",
            "hostnameport=old.example.com:443")
    (x,) = cb.findings(code="expired")
    assert x["bindings"] == ["hostnameport=old.example.com:443"]
    assert old.thumbprint in x["message"]


def test_one_binding_stored_under_two_spellings_fails_as_serve_does(cb):
    """Two rows whose keys are one binding (ipport=10.0.0.1:443 and :0443): serve refuses to
    load such a store, and check says so in the same words rather than report on half."""
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("ipport=127.0.0.1:443", c)
    assert cb.check()[0] == 0
    db_exec(cb, "INSERT INTO bindings SELECT 'ipport=127.0.0.1:0443', certhash, appid, backend,"
            " ccspath, flags, proxy, clientca, certhash2 FROM bindings WHERE key = ?",
            "ipport=127.0.0.1:443")
    rc, out, err = cb.run("check", "--json")
    assert rc == 1 and out == "", (rc, out, err)
    assert "duplicate binding ipport=127.0.0.1:443 in the store" in err
    # Another spelling alone is one binding: checked as usual.
    db_exec(cb, "DELETE FROM bindings WHERE key = ?", "ipport=127.0.0.1:443")
    assert cb.check() == (0, [])


def test_one_binding_stored_as_text_and_as_bytes_fails_as_serve_does(cb):
    """The canonical key again, but stored as a BLOB (or with a NUL after it) by another
    program: the same binding twice for serve, which refuses the store; so does check."""
    import sqlite3
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)
    assert cb.check()[0] == 0
    for stored in (b"hostnameport=www.example.com:443",
                   "hostnameport=www.example.com:443\x00x"):
        con = sqlite3.connect(str(cb.state / "certbind.db"), timeout=60)
        con.execute("INSERT INTO bindings SELECT ?, certhash, appid, backend, ccspath, flags,"
                    " proxy, clientca, certhash2 FROM bindings WHERE key = ?",
                    (stored, "hostnameport=www.example.com:443"))
        con.commit()
        con.close()
        rc, out, err = cb.run("check", "--json")
        assert rc == 1 and out == "", (stored, rc, out, err)
        assert "duplicate binding hostnameport=www.example.com:443 in the store" in err, err
        db_exec(cb, "DELETE FROM bindings WHERE key = ?", stored)
        assert cb.check()[0] == 0


@root_only
def test_temporary_folder_unusable(cb):
    """check sorts its findings in SQLite's temporary file once they outgrow its cache: when
    that folder cannot take it, check fails with a line that says which folders and what to
    do, and leaves the store as it was."""
    import sqlite3
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.bind("hostnameport=www.example.com:443", c)
    # 40 000 IP bindings (written as another program would): two findings each, ~30 MB of
    # them, past the 16 MiB the temporary tables keep in memory.
    con = sqlite3.connect(str(cb.state / "certbind.db"), timeout=60)
    con.executemany("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy,"
                    " clientca, certhash2) VALUES (?, ?, '', '', '', 0, 0, '', '')",
                    (("ipport=10.%d.%d.1:443" % (i // 200, i % 200), c.thumbprint)
                     for i in range(40000)))
    con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'generation'")
    con.commit()
    con.close()
    cb.env["SQLITE_TMPDIR"] = "/proc"  # a folder; root passes access(), creating fails
    msg = cb.fails(1, "check", "--json")
    assert "temporary file" in msg and "TMPDIR" in msg, msg
    del cb.env["SQLITE_TMPDIR"]
    rc, f = cb.check()
    assert rc == 1 and len(f) == 80000
