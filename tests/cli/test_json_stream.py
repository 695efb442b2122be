"""`show sslcert --json`, `show cert --json` and `check --json` print their lists as they walk
the store (no document is built in memory first): the output is one valid JSON document of
the shapes of bindings.md section 4, with every element, laid out as before (two-space
indent, keys in order), for an empty store, one element, and a store of thousands."""

import json
import sqlite3

N = 5000  # bindings cloned into the store beside the one the CLI adds


def _assert_layout(out):
    """The document, parsed; its text must be exactly the two-space layout of its content."""
    doc = json.loads(out)
    assert out == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return doc


def _clone_bindings(cb, thumb, n):
    """n more hostnameport bindings to thumb, as `add sslcert` writes rows (one transaction,
    the generation bumped), for names the certificate does not cover (name-mismatch)."""
    db = sqlite3.connect(cb.db)
    with db:
        db.execute(
            "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?) "
            "INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) "
            "SELECT 'hostnameport=s' || n || '.big.test:443', ?, '', '', '', 0, 0 FROM i",
            (n, thumb))
        db.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
    db.close()


def test_empty_and_single_lists_keep_their_layout(cb, bound):
    for args, member in ((("show", "sslcert"), "bindings"), (("check",), "findings")):
        out = cb.ok(*args, "--json")
        assert _assert_layout(out) == {member: []}
        assert out == '{\n  "%s": []\n}\n' % member
    doc = _assert_layout(cb.ok("show", "cert", "--json"))
    assert [c["thumbprint"] for c in doc["certs"]] == [bound.thumbprint]
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint)
    doc = _assert_layout(cb.ok("show", "sslcert", "hostnameport=www.example.com:443", "--json"))
    assert [b["key"] for b in doc["bindings"]] == ["hostnameport=www.example.com:443"]
    doc = _assert_layout(cb.ok("show", "cert", bound.thumbprint, "--json"))
    assert doc["certs"][0]["bindings"] == ["hostnameport=www.example.com:443"]


def test_a_missing_binding_prints_no_partial_document(cb, bound):
    rc, out, err = cb.run("show", "sslcert", "hostnameport=nowhere.example.com:443", "--json")
    assert rc == 1 and out == "", (rc, out)
    assert err.startswith("certbind: error: no binding"), err


def test_a_big_store_is_one_valid_document_with_every_element(cb, bound):
    cb.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + bound.thumbprint)
    _clone_bindings(cb, bound.thumbprint, N)

    doc = _assert_layout(cb.ok("show", "sslcert", "--json"))
    keys = [b["key"] for b in doc["bindings"]]
    assert len(keys) == N + 1 and len(set(keys)) == N + 1
    assert "hostnameport=s%d.big.test:443" % N in keys
    assert all(b["certhash"] == bound.thumbprint for b in doc["bindings"])

    doc = _assert_layout(cb.ok("show", "cert", "--json"))
    (c,) = doc["certs"]
    assert len(c["bindings"]) == N + 1

    # Every cloned name is one the certificate does not cover: N errors, exit 1.
    rc, out, err = cb.run("check", "--json")
    assert rc == 1, (rc, err)
    doc = _assert_layout(out)
    mismatched = [f["bindings"][0] for f in doc["findings"] if f["code"] == "name-mismatch"]
    assert len(mismatched) == N and len(set(mismatched)) == N
    assert err.startswith("certbind: error: check found %d errors" % N), err
