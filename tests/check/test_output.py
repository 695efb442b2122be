"""check's contract (bindings.md sections 4-5, README "Check"): exit status, the --json shape,
human output grouped by port then binding, a fix in every message, the empty store."""

import json
import os
import re


import checklib
from checklib import CODES, ERR, assert_shape, days, make_ca, make_cert, now

# A fix: a certbind command to run, or an instruction.
FIX = re.compile(r"certbind (add|update|delete|set) |\b(rename|replace|renew|create it|chmod|"
                 r"import|bind|delete|add|fix|give)\b", re.I)


def every_code(cb):
    """One store with every finding code; returns {code: first binding expected}."""
    good = make_cert(["www.example.com"])
    cb.add_cert(good)
    # port 443: a default, a shadowing IP binding, a name the certificate does not cover
    cb.bind("ipport=0.0.0.0:443", good)
    cb.bind("hostnameport=www.example.com:443", good)
    cb.bind("hostnameport=shop.example.com:443", good)
    cb.bind("ipport=127.0.0.2:443", good, force=True)
    # port 8443: SNI only (no default); validity dates
    for name, nb, na in (("exp", -100, -2), ("soon", -1, 10), ("nyv", 10, 100)):
        c = make_cert(["%s.example.com" % name], not_before=now() + days(nb),
                      not_after=now() + days(na))
        cb.add_cert(c)
        cb.bind("hostnameport=%s.example.com:8443" % name, c)
    # port 9443: a missing key, an unknown certificate, a broken chain, a weak key
    nokey = make_cert(["nokey.example.com"])
    cb.add_cert(nokey)
    cb.bind("ipport=0.0.0.0:9443", nokey)
    os.unlink(cb.key_path(nokey))
    cb.bind("ipport=192.0.2.1:9443", make_cert(["ghost.example.com"]), force=True)
    part = make_cert(["part.example.com"], issuer=make_ca())
    cb.add_cert(part, chain=False)
    cb.bind("ipport=192.0.2.2:9443", part)
    weak = make_cert(["weak.example.com"], key_type="rsa", bits=1024)
    cb.add_cert(weak)
    cb.bind("ipport=192.0.2.3:9443", weak)
    # port 10443: a central store folder that does not exist
    cb.ok("add", "sslcert", "ccs=10443", "ccspath=%s" % (cb.base / "no-such-folder"))
    # port 443 again: managed bindings (ACME) without a certificate, one of them failing
    cb.ok("add", "sslcert", "hostnameport=pending.example.com:443", "acme=enable", "force=yes")
    cb.ok("add", "sslcert", "hostnameport=failing.example.com:443", "acme=enable", "force=yes")
    # port 12443: two certificates (certhash=T1,T2) that cover different names
    other_rsa = make_cert(["other.example.net"], key_type="rsa")
    cb.add_cert(other_rsa)
    cb.bind("ipport=0.0.0.0:12443", "%s,%s" % (good.thumbprint, other_rsa.thumbprint), force=True)
    # a binding row damaged behind certbind's back; the state serve writes for a failure
    import sqlite3
    db = sqlite3.connect(str(cb.state / "certbind.db"))
    with db:
        db.execute("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) VALUES('ipport=127.0.0.5:11443', 'xyz', '', "
                   "'', '', 0, 0)")
        db.execute("INSERT INTO acme_state VALUES('hostnameport=failing.example.com:443', 3, "
                   "0, 0, 1700000000, 1700000060, 1, 'urn:ietf:params:acme:error:dns', 0, 0)")
    db.close()
    return {
        "store-damaged": "ipport=127.0.0.5:11443",
        "address-not-local": None,  # the 192.0.2.x bindings
        "ip-shadows-sni": "ipport=127.0.0.2:443",
        "name-mismatch": "hostnameport=shop.example.com:443",
        "expired": "hostnameport=exp.example.com:8443",
        "expires-soon": "hostnameport=soon.example.com:8443",
        "not-yet-valid": "hostnameport=nyv.example.com:8443",
        "key-unusable": "ipport=0.0.0.0:9443",
        "unknown-cert": "ipport=192.0.2.1:9443",
        "chain-incomplete": "ipport=192.0.2.2:9443",
        "weak-key": "ipport=192.0.2.3:9443",
        "ccs-missing": "ccs=10443",
        "no-default-for-non-sni": None,  # on 8443 and 10443
        "acme-pending": "hostnameport=pending.example.com:443",
        "acme-failing": "hostnameport=failing.example.com:443",
        "dual-cert-mismatch": "ipport=0.0.0.0:12443",
    }


def port_of(key):
    return int(key.rsplit(":", 1)[1] if ":" in key else key.split("=", 1)[1])


def test_every_code_json_shape_and_fixes(cb):
    want = every_code(cb)
    rc, out, err = cb.run("check", "--json")
    assert rc == 1
    assert err.startswith(ERR) and len(err.splitlines()) == 1
    doc = json.loads(out)
    assert_shape(doc)  # exactly {"findings": [{"code","severity","bindings","message"}]}
    f = doc["findings"]
    assert sorted({x["code"] for x in f}) == sorted(CODES)
    for code, first in want.items():
        got = [x for x in f if x["code"] == code]
        assert got, code
        if first is not None:
            assert [x["bindings"][0] for x in got] == [first], (code, got)
    assert sorted(port_of(x["bindings"][0]) for x in f if x["code"] == "no-default-for-non-sni") \
        == [8443, 10443]
    for x in f:
        assert x["bindings"], x  # every finding names the bindings involved
        assert FIX.search(x["message"]), "no fix in: %s" % x["message"]
    # the same with --json before the command (global flags go anywhere)
    p = cb.run("--json", "check")
    assert p[0] == 1 and json.loads(p[1]) == doc


def parse_human(out):
    """[(port, binding, severity, code, message)], and the summary line."""
    rows, port, binding, summary = [], None, None, None
    lines = out.split("\n")
    for line in lines:
        if not line:
            continue
        m = re.fullmatch(r"Port (\d+)", line)
        if m:
            port, binding = int(m.group(1)), None
            continue
        if re.fullmatch(r"\d+ errors?, \d+ warnings?\.", line):
            summary = line
            continue
        assert port is not None, "a line before the first 'Port N': %r" % line
        if line.startswith("    "):
            text = line.strip()
            if text.startswith("also:"):
                continue
            sev, code, msg = text.split(None, 2)
            assert binding is not None, line
            rows.append((port, binding, sev, code, msg))
        elif line.startswith("  "):
            binding = line.strip()
            assert port_of(binding) == port, "%s under Port %d" % (binding, port)
        else:
            raise AssertionError("unexpected line %r" % line)
    return rows, summary


def test_human_output_grouped_by_port_then_binding(cb):
    every_code(cb)
    rc, out, err = cb.run("check")
    assert rc == 1 and err.startswith(ERR)
    rows, summary = parse_human(out)
    # each port once, in order, each with a "Port N" line before its bindings
    ports = [int(m) for m in re.findall(r"^Port (\d+)$", out, re.M)]
    assert ports == sorted(set(ports)) == [443, 8443, 9443, 10443, 11443, 12443]
    # each binding once within its port
    seen = []
    for port, binding, *_ in rows:
        if not seen or seen[-1] != (port, binding):
            assert (port, binding) not in seen, "%s appears twice under Port %d" % (binding, port)
            seen.append((port, binding))
    # the same findings as --json, under the binding at fault
    f = json.loads(cb.run("check", "--json")[1])["findings"]
    human = sorted((b, c, s, m) for _, b, s, c, m in rows)
    assert human == sorted((x["bindings"][0], x["code"], x["severity"], x["message"]) for x in f)
    errors = sum(x["severity"] == "error" for x in f)
    warnings = len(f) - errors
    assert summary == "%d error%s, %d warning%s." % (errors, "" if errors == 1 else "s",
                                                    warnings, "" if warnings == 1 else "s")


def test_exit_0_with_warnings_only(cb):
    soon = make_cert(["www.example.com"], not_after=now() + days(5))
    cb.add_cert(soon)
    cb.bind("hostnameport=www.example.com:443", soon)  # and no default: two warnings
    rc, f = cb.check()
    assert rc == 0
    assert sorted(x["code"] for x in f) == ["expires-soon", "no-default-for-non-sni"]
    assert all(x["severity"] == "warning" for x in f)
    rc, out, err = cb.run("check")
    assert rc == 0 and err == ""
    assert "0 errors, 2 warnings." in out
    # one error makes it 1
    cb.bind("hostnameport=shop.example.com:443", soon)
    rc, out, err = cb.run("check")
    assert rc == 1 and "name-mismatch" in out
    assert err.startswith(ERR) and "1 error" in err
    assert cb.check()[0] == 1


def test_malformed_soon_exits_2(cb):
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    for bad in ("soon=abc", "soon=", "soon=-1", "soon=1.5", "soon=99999", "when=3"):
        for args in (("check", bad), ("check", bad, "--json")):
            rc, out, err = cb.run(*args)
            assert rc == 2, (args, rc, out, err)
            assert out == ""
            assert len(err.splitlines()) == 1 and err.startswith(ERR), err
    assert cb.run("check", "soon=30")[0] == 0


def test_empty_store(cb):
    # a state folder that does not exist yet
    os.mkdir(cb.base / "fresh")
    fresh = checklib.CertBind(cb.base / "fresh", None)
    assert not fresh.state.exists()
    rc, out, err = fresh.run("check", "--json")
    assert (rc, err) == (0, "") and json.loads(out) == {"findings": []}
    rc, out, err = fresh.run("check")
    assert (rc, err) == (0, "") and "Port" not in out
    # a store with certificates (even an expired one) but no binding
    cb.add_cert(make_cert(["www.example.com"]))
    cb.add_cert(make_cert(["old.example.com"], not_before=now() - days(100),
                          not_after=now() - days(1)))
    rc, out, err = cb.run("check", "--json")
    assert (rc, err) == (0, "") and json.loads(out) == {"findings": []}
    rc, out, err = cb.run("check")
    assert (rc, err) == (0, "") and "Port" not in out and out.strip()


def test_many_findings_each_names_its_bindings(cb):
    """Regression: findings were grown by realloc while pointers to earlier ones were kept,
    so past 16 findings some lost their bindings (use after free)."""
    ca = make_ca()  # not imported: every chain below is incomplete
    for i in range(12):
        # three findings each: expired, chain-incomplete, weak-key
        c = make_cert(["s%d.example.com" % i], key_type="rsa", bits=1024, issuer=ca,
                      not_before=now() - days(100), not_after=now() - days(1))
        cb.add_cert(c, chain=False)
        cb.bind("ipport=0.0.0.0:%d" % (1000 + i), c)
    rc, f = cb.check()
    assert rc == 1 and len(f) == 36
    for x in f:
        assert x["bindings"], "a finding without bindings: %s" % x
    for i in range(12):
        mine = sorted(x["code"] for x in f if x["bindings"] == ["ipport=0.0.0.0:%d" % (1000 + i)])
        assert mine == ["chain-incomplete", "expired", "weak-key"], (i, mine)


def test_many_central_store_findings_each_names_its_binding(cb):
    """The same for central-store files with two findings each (name-mismatch, expired),
    after one no-default-for-non-sni finding: the 16th finding moved the first away."""
    store = cb.folder("ccs")
    for i in range(12):
        cb.ccs_file(store, "f%d.example.org.pem" % i, make_cert(
            ["other%d.example.org" % i], not_before=now() - days(100),
            not_after=now() - days(1)))
    cb.ok("add", "sslcert", "ccs=443", "ccspath=%s" % store)
    rc, f = cb.check()
    assert rc == 1
    for x in f:
        assert x["bindings"] == ["ccs=443"], "a finding without its binding: %s" % x
    assert sorted(x["code"] for x in f) == \
        ["expired"] * 12 + ["name-mismatch"] * 12 + ["no-default-for-non-sni"]
    for i in range(12):
        path = str(store / ("f%d.example.org.pem" % i))
        assert sorted(x["code"] for x in f if path in x["message"]) == ["expired",
                                                                        "name-mismatch"]


def test_json_keeps_a_finding_whose_path_is_not_utf8(cb):
    """Regression: a message holding a path that is not UTF-8 was dropped from --json while
    the exit status still counted it."""
    c = make_cert(["www.example.com"])
    cb.add_cert(c)
    cb.bind("ipport=0.0.0.0:443", c)
    cb.ok("add", "sslcert", "ccs=443", b"ccspath=" + os.fsencode(cb.base) + b"/caf\xe9")
    rc, f = cb.check()  # check() asserts: exit 1 exactly when --json lists an error
    assert rc == 1
    (x,) = f
    assert x["code"] == "ccs-missing" and x["bindings"] == ["ccs=443"]
    assert str(cb.base) in x["message"]
