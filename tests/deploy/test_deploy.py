"""`certbind deploy FILE`: which bindings move (match=previous|hostname|both), preview,
nothing matched, unused and pruned certificates, --json, and bad input (design
bindings.md section 6, README "Renewal")."""
import json
import os

import pytest

from deploykit import days_ago, make_cert

ERR = "certbind: error: "


def moved_keys(doc):
    return sorted(m["binding"] for m in doc["moves"])


# ---- match=previous -------------------------------------------------------


def test_previous_moves_every_binding_of_older_certs_with_the_same_names(cb):
    names = ["www.example.com", "example.com"]
    old1 = make_cert(names, days_ago(80))
    old2 = make_cert(names, days_ago(40))
    other = make_cert(["shop.example.org"], days_ago(80))
    new = make_cert(list(reversed(names)), days_ago(1))  # same names, another order
    for c in (old1, old2, other):
        cb.add_cert(c)
    cb.bind("hostnameport=www.example.com:8443", old1)
    cb.bind("ipport=0.0.0.0:8443", old1)  # previous moves IP bindings too
    cb.bind("hostnameport=example.com:9443", old2)
    cb.bind("hostnameport=shop.example.org:8443", other)

    r = cb.deploy(new, "match=previous")
    assert r.returncode == 0, r.stderr
    assert cb.bindings() == {
        "hostnameport=www.example.com:8443": new.thumb,
        "ipport=0.0.0.0:8443": new.thumb,
        "hostnameport=example.com:9443": new.thumb,
        "hostnameport=shop.example.org:8443": other.thumb,
    }
    assert new.thumb in cb.certs()
    for key, old in (("hostnameport=www.example.com:8443", old1),
                     ("ipport=0.0.0.0:8443", old1), ("hostnameport=example.com:9443", old2)):
        line = [l for l in r.stdout.splitlines() if key in l]
        assert len(line) == 1 and old.thumb in line[0] and new.thumb in line[0], r.stdout


@pytest.mark.parametrize("new_names", [
    ["www.example.com"],                                    # fewer names
    ["www.example.com", "example.com", "api.example.com"],  # more names
    ["www.example.net", "example.net"],                     # other names
])
def test_previous_does_not_take_a_cert_with_different_names(cb, new_names):
    old = make_cert(["www.example.com", "example.com"], days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("ipport=0.0.0.0:8443", old)
    before = cb.snapshot()
    new = make_cert(new_names, days_ago(1))
    r = cb.deploy(new, "match=previous")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nothing changed" in r.stderr
    assert cb.snapshot() == before
    assert new.thumb not in cb.certs()


def test_a_newer_certificate_is_not_previous(cb):
    names = ["www.example.com"]
    current = make_cert(names, days_ago(5))
    older = make_cert(names, days_ago(50))
    cb.add_cert(current)
    cb.bind("hostnameport=www.example.com:8443", current)
    cb.bind("ipport=0.0.0.0:8443", current)
    before = cb.snapshot()
    r = cb.deploy(older, "match=previous")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nothing changed" in r.stderr
    assert cb.snapshot() == before
    assert older.thumb not in cb.certs()
    # Deploying the older one by default (both) leaves the IP binding: it only moves by previous.
    r = cb.deploy(older, "--json")
    assert r.returncode == 0, r.stderr
    assert cb.bindings() == {"hostnameport=www.example.com:8443": older.thumb,
                             "ipport=0.0.0.0:8443": current.thumb}


# ---- match=hostname -------------------------------------------------------


def hostname_store(cb):
    """Bindings where hostname and previous disagree; returns (new, unrelated, same_names)."""
    new = make_cert(["www.example.com", "*.api.example.com"], days_ago(1), ips=["127.0.0.1"])
    unrelated = make_cert(["legacy.example.net"], days_ago(60))
    same_names = make_cert(["www.example.com", "*.api.example.com"], days_ago(60),
                           ips=["127.0.0.1"])
    cb.add_cert(unrelated)
    cb.add_cert(same_names)
    for host in ("www.example.com", "v1.api.example.com", "*.api.example.com",
                 "a.b.api.example.com", "api.example.com", "mail.example.com", "*.example.com",
                 "www.example.com.evil.org"):
        cb.bind("hostnameport=%s:8443" % host, unrelated)
    cb.bind("hostnameport=www.example.com:9443", same_names)
    cb.bind("ipport=0.0.0.0:9443", same_names)   # only previous takes it
    cb.bind("ipport=127.0.0.1:7443", unrelated)  # an IP the new certificate names: still no
    cb.bind("ipport=[::]:7443", unrelated)
    return new, unrelated, same_names


BY_HOSTNAME = {"hostnameport=www.example.com:8443", "hostnameport=v1.api.example.com:8443",
               "hostnameport=*.api.example.com:8443", "hostnameport=www.example.com:9443"}
BY_PREVIOUS = {"hostnameport=www.example.com:9443", "ipport=0.0.0.0:9443"}


def test_hostname_moves_sni_bindings_the_new_certificate_covers(cb):
    new, unrelated, same_names = hostname_store(cb)
    before = cb.bindings()
    r = cb.deploy(new, "match=hostname", json_out=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(moved_keys(doc)) == BY_HOSTNAME
    after = cb.bindings()
    for key, thumb in before.items():
        assert after[key] == (new.thumb if key in BY_HOSTNAME else thumb), key
    # One label only: neither the parent nor a deeper name; IP bindings never by name.
    for key in ("hostnameport=a.b.api.example.com:8443", "hostnameport=api.example.com:8443",
                "hostnameport=*.example.com:8443", "hostnameport=mail.example.com:8443",
                "hostnameport=www.example.com.evil.org:8443", "ipport=127.0.0.1:7443",
                "ipport=[::]:7443", "ipport=0.0.0.0:9443"):
        assert after[key] == before[key], key


def test_hostname_alone_matches_no_ip_binding(cb):
    old = make_cert(["www.example.com"], days_ago(60), ips=["127.0.0.1"])
    cb.add_cert(old)
    cb.bind("ipport=127.0.0.1:8443", old)
    cb.bind("ipport=0.0.0.0:9443", old)
    before = cb.snapshot()
    new = make_cert(["www.example.com"], days_ago(1), ips=["127.0.0.1"])
    r = cb.deploy(new, "match=hostname")
    assert r.returncode == 1 and "nothing changed" in r.stderr, r.stdout + r.stderr
    assert cb.snapshot() == before


# ---- match=both (the default) ---------------------------------------------


def test_both_is_the_union_and_the_default(cb):
    new, unrelated, same_names = hostname_store(cb)
    plans = {}
    for opts in (["match=both"], [], ["match=previous"], ["match=hostname"]):
        r = cb.deploy(new, "preview=yes", *opts, json_out=True)
        assert r.returncode == 0, r.stderr
        plans[" ".join(opts) or "default"] = set(moved_keys(json.loads(r.stdout)))
    assert plans["match=previous"] == BY_PREVIOUS
    assert plans["match=hostname"] == BY_HOSTNAME
    assert plans["match=both"] == BY_HOSTNAME | BY_PREVIOUS
    assert plans["default"] == plans["match=both"]
    before = cb.bindings()
    r = cb.deploy(new)
    assert r.returncode == 0, r.stderr
    after = cb.bindings()
    assert {k for k in after if after[k] != before[k]} == BY_HOSTNAME | BY_PREVIOUS
    assert all(after[k] == new.thumb for k in BY_HOSTNAME | BY_PREVIOUS)
    # Each binding is moved once, even when both rules take it.
    assert r.stdout.count("hostnameport=www.example.com:9443") == 1, r.stdout


# ---- preview, nothing matched ---------------------------------------------


def test_preview_prints_the_plan_and_changes_nothing(cb):
    names = ["www.example.com"]
    old = make_cert(names, days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("ipport=0.0.0.0:8443", old)
    before = cb.snapshot()
    new = make_cert(names, days_ago(1))
    r = cb.deploy(new, "preview=yes")
    assert r.returncode == 0, r.stderr
    for key in ("hostnameport=www.example.com:8443", "ipport=0.0.0.0:8443"):
        line = [l for l in r.stdout.splitlines() if key in l]
        assert len(line) == 1, r.stdout
        assert old.thumb in line[0] and new.thumb in line[0], r.stdout
        assert line[0].index(old.thumb) < line[0].index(new.thumb)
    assert "nothing changed" in r.stdout.lower()
    assert cb.snapshot() == before
    assert new.thumb not in cb.certs()
    assert not any(new.thumb in f for f in cb.files())
    doc = json.loads(cb.deploy(new, "preview=yes", json_out=True).stdout)
    assert doc["preview"] is True and doc["pruned"] is False
    assert doc["unused"] == [old.thumb]
    assert cb.snapshot() == before


def test_preview_with_prune_deletes_nothing(cb):
    old = make_cert(["www.example.com"], days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    before = cb.snapshot()
    r = cb.deploy(make_cert(["www.example.com"], days_ago(1)), "preview=yes", "prune=yes")
    assert r.returncode == 0, r.stderr
    assert old.thumb in r.stdout
    assert cb.snapshot() == before


@pytest.mark.parametrize("match", [None, "previous", "hostname", "both"])
def test_nothing_matched_says_so_and_changes_nothing(cb, match):
    old = make_cert(["www.example.com"], days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("ipport=0.0.0.0:8443", old)
    before = cb.snapshot()
    new = make_cert(["intranet.example.net"], days_ago(1))
    r = cb.deploy(new, *(["match=" + match] if match else []))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith(ERR) and "nothing changed" in r.stderr, r.stderr
    assert new.thumb in r.stderr
    assert cb.snapshot() == before
    assert new.thumb not in cb.certs()


def test_nothing_matched_on_a_store_without_bindings(cb):
    cb.add_cert(make_cert(["www.example.com"], days_ago(60)))
    before = cb.snapshot()
    r = cb.deploy(make_cert(["www.example.com"], days_ago(1)))
    assert r.returncode == 1 and "nothing changed" in r.stderr, r.stderr
    assert cb.snapshot() == before


def test_deploying_the_bound_certificate_again_matches_nothing(cb):
    cert = make_cert(["www.example.com"], days_ago(5))
    cb.add_cert(cert)
    cb.bind("hostnameport=www.example.com:8443", cert)
    before = cb.snapshot()
    r = cb.deploy(cert)
    assert r.returncode == 1 and "nothing changed" in r.stderr, r.stderr
    assert cb.snapshot() == before


# ---- unused certificates, prune -------------------------------------------


def prune_store(cb):
    """old: every binding moves; partly: one binding moves, one stays; idle: never bound."""
    names = ["www.example.com", "example.com"]
    old = make_cert(names, days_ago(60))
    partly = make_cert(["a.example.com", "b.example.com"], days_ago(60))
    idle = make_cert(names, days_ago(90))
    new = make_cert(names + ["a.example.com"], days_ago(1))
    for c in (old, partly, idle):
        cb.add_cert(c)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("hostnameport=example.com:8443", old)
    cb.bind("hostnameport=a.example.com:8443", partly)  # moves by hostname
    cb.bind("ipport=0.0.0.0:9443", partly)              # stays: partly is still used
    return new, old, partly, idle


def test_unused_old_certificates_are_listed_and_kept(cb):
    new, old, partly, idle = prune_store(cb)
    r = cb.deploy(new)
    assert r.returncode == 0, r.stderr
    unused_line = [l for l in r.stdout.splitlines() if old.thumb in l and "->" not in l]
    assert len(unused_line) == 1 and "prune=yes" in unused_line[0], r.stdout
    assert partly.thumb not in unused_line[0] and idle.thumb not in unused_line[0]
    certs = cb.certs()
    assert {old.thumb, partly.thumb, idle.thumb, new.thumb} <= set(certs)
    assert certs[old.thumb]["bindings"] == []
    assert "certs/%s.pem" % old.thumb in cb.files()


def test_prune_deletes_only_what_no_binding_uses_with_its_files(cb):
    new, old, partly, idle = prune_store(cb)
    r = cb.deploy(new, "prune=yes", json_out=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["unused"] == [old.thumb] and doc["pruned"] is True
    certs = cb.certs()
    assert old.thumb not in certs
    assert partly.thumb in certs and certs[partly.thumb]["bindings"] == ["ipport=0.0.0.0:9443"]
    assert idle.thumb in certs  # unused before this deploy: not this deploy's to delete
    files = cb.files()
    assert "certs/%s.pem" % old.thumb not in files and "keys/%s.key" % old.thumb not in files
    for t in (partly.thumb, idle.thumb, new.thumb):
        assert "certs/%s.pem" % t in files and "keys/%s.key" % t in files
    assert set(cb.bindings().values()) == {new.thumb, partly.thumb}


@pytest.mark.parametrize("folder", ["live", "state-live"])
def test_prune_never_deletes_linked_files(cb, folder):
    """A linked certificate's files are the user's: pruning forgets them, never deletes
    them, even in a folder whose name starts like the state folder's."""
    old = make_cert(["www.example.com"], days_ago(60))
    live = cb.base / folder
    cb.add_cert(old, stem="site", link=True, folder=live)
    cb.bind("hostnameport=www.example.com:8443", old)
    r = cb.deploy(make_cert(["www.example.com"], days_ago(1)), "prune=yes")
    assert r.returncode == 0, r.stderr
    assert old.thumb not in cb.certs()
    assert (live / "site.pem").read_bytes() == old.pem
    assert (live / "site.key").read_bytes() == old.key_pem


# ---- --json ---------------------------------------------------------------


def test_json_output_shape(cb):
    old = make_cert(["www.example.com"], days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("ipport=0.0.0.0:8443", old)
    new = make_cert(["www.example.com"], days_ago(1))
    r = cb.deploy(new, json_out=True)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"certificate", "preview", "moves", "unused", "pruned"}
    assert doc["certificate"] == new.thumb
    assert doc["preview"] is False and doc["pruned"] is False
    assert doc["unused"] == [old.thumb]
    assert sorted(doc["moves"], key=lambda m: m["binding"]) == [
        {"binding": "hostnameport=www.example.com:8443", "from": old.thumb, "to": new.thumb},
        {"binding": "ipport=0.0.0.0:8443", "from": old.thumb, "to": new.thumb},
    ]


# ---- bad input ------------------------------------------------------------


def bad_match(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [c, "key=%s" % k, "match=foo"]


def missing_file(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [cb.base / "new" / "absent.pem", "key=%s" % k]


def missing_key(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [c, "key=%s" % (cb.base / "new" / "absent.key")]


def not_a_certificate(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    junk = cb.base / "new" / "notes.txt"
    junk.write_text("renew me next month\n")
    return [junk, "key=%s" % k]


def key_as_certificate(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [k, "key=%s" % k]


def key_mismatch(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    c2, k2 = other.write(cb.base / "new", "o")
    return [c, "key=%s" % k2]


def bad_preview(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [c, "key=%s" % k, "preview=maybe"]


def unknown_option(cb, new, other):
    c, k = new.write(cb.base / "new", "n")
    return [c, "key=%s" % k, "mtach=previous"]


def no_file(cb, new, other):
    return []


@pytest.mark.parametrize("case", [bad_match, missing_file, missing_key, not_a_certificate,
                                  key_as_certificate, key_mismatch, bad_preview, unknown_option,
                                  no_file], ids=lambda f: f.__name__)
def test_bad_input_exits_2_and_leaves_the_store_unchanged(cb, case):
    names = ["www.example.com"]
    old = make_cert(names, days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    before = cb.snapshot()
    new = make_cert(names, days_ago(1))
    args = case(cb, new, make_cert(names, days_ago(2)))
    r = cb.run("deploy", *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(ERR) and r.stderr.count("\n") == 1, r.stderr
    assert cb.snapshot() == before
    assert new.thumb not in cb.certs()
    assert sorted(os.listdir(cb.state / "certs")) == ["%s.pem" % old.thumb]
