"""Renewal while `serve` runs: a deploy is served live without breaking open
connections, and linked files (`add cert … link=yes`) are watched: a pair rewritten
in two steps moves its bindings only once it is valid again; the certbot hook."""
import os
import subprocess
import time

import pytest

from deploykit import (BIN, HOOK, days_ago, make_ca, make_cert, replace_file, served,
                       wait_served, write_file, connect, der_thumb)


def test_deploy_while_serving_is_served_live_and_open_connections_keep_working(cb, port, echo):
    old = make_cert(["www.example.com"], days_ago(60))
    shop = make_cert(["shop.example.org"], days_ago(60))
    cb.add_cert(old)
    cb.add_cert(shop)
    cb.bind("hostnameport=www.example.com:%d" % port, old, "backend=127.0.0.1:%d" % echo.port)
    cb.bind("hostnameport=shop.example.org:%d" % port, shop)
    s = cb.serve()
    assert served(port, "www.example.com") == old.thumb
    assert served(port, "shop.example.org") == shop.thumb

    early = connect(port, "www.example.com")
    try:
        early.sendall(b"before the deploy\n")
        assert early.recv(100) == b"before the deploy\n"
        new = make_cert(["www.example.com"], days_ago(1))
        r = cb.deploy(new)
        assert r.returncode == 0, r.stderr
        took = wait_served(port, "www.example.com", new.thumb, timeout=3.0)
        # The connection made before still works, on the certificate it began with.
        early.sendall(b"after the deploy\n")
        assert early.recv(100) == b"after the deploy\n"
        assert der_thumb(early.getpeercert(binary_form=True)) == old.thumb
    finally:
        early.close()
    # Every later handshake gets the new one; the other binding is untouched.
    for _ in range(5):
        assert served(port, "www.example.com") == new.thumb
    assert served(port, "shop.example.org") == shop.thumb
    with connect(port, "www.example.com") as late:
        late.sendall(b"new connection\n")
        assert late.recv(100) == b"new connection\n"
    assert s.proc.poll() is None, s.log()
    print("deploy served after %.2f s" % took)


def link_pair(cb, port, folder="live"):
    """A linked pair in base/FOLDER with three bindings, and serve running."""
    old = make_cert(["www.example.com", "example.com"], days_ago(60))
    live = cb.base / folder
    cb.add_cert(old, stem="site", link=True, folder=live)
    keys = ["hostnameport=www.example.com:%d" % port, "hostnameport=example.com:%d" % port,
            "ipport=0.0.0.0:%d" % port]
    for k in keys:
        cb.bind(k, old)
    s = cb.serve()
    assert served(port, "www.example.com") == old.thumb
    return old, live, keys, s


@pytest.mark.parametrize("folder,write", [("live", write_file), ("live", replace_file),
                                          ("state-live", write_file)],
                         ids=["in-place", "rename", "folder-named-like-the-state"])
def test_watched_pair_rewritten_key_first_then_cert(cb, port, folder, write):
    old, live, keys, s = link_pair(cb, port, folder)
    new = make_cert(["www.example.com", "example.com"], days_ago(1))

    # Step 1: the key. The pair no longer matches: logged, ignored, old still served.
    mark = s.mark()
    write(live / "site.key", new.key_pem, key=True)
    line = s.wait_for("event=link_waiting", 5, mark)
    assert str(live / "site.pem") in line and old.thumb in line, line
    for _ in range(5):
        assert served(port, "www.example.com") == old.thumb
        time.sleep(0.1)
    assert set(cb.bindings().values()) == {old.thumb}

    # Step 2: the certificate. Valid again: every binding moves, live.
    mark = s.mark()
    write(live / "site.pem", new.pem)
    wait_served(port, "www.example.com", new.thumb, timeout=3.0)
    line = s.wait_for("event=link_renewed", 3, mark)
    assert old.thumb in line and new.thumb in line and "bindings=3" in line, line
    assert cb.bindings() == {k: new.thumb for k in keys}
    certs = cb.certs()
    assert old.thumb not in certs
    assert certs[new.thumb]["key_path"] == os.path.realpath(live / "site.key")
    assert served(port, "example.com") == new.thumb
    assert served(port, "other.example.net") == new.thumb  # the IP binding, for any name
    assert "link_failed" not in s.log()


def test_watched_pair_waits_through_a_mismatch_and_a_half_written_cert(cb, port):
    old, live, keys, s = link_pair(cb, port)
    new = make_cert(["www.example.com", "example.com"], days_ago(1))
    mark = s.mark()
    write_file(live / "site.pem", new.pem[: len(new.pem) // 2])  # cut short
    s.wait_for("event=link_waiting", 5, mark)
    write_file(live / "site.key", new.key_pem, key=True)
    time.sleep(0.8)
    assert served(port, "www.example.com") == old.thumb
    assert set(cb.bindings().values()) == {old.thumb}
    write_file(live / "site.pem", new.pem)
    wait_served(port, "www.example.com", new.thumb, timeout=3.0)
    assert cb.bindings() == {k: new.thumb for k in keys}


def test_watched_pair_renews_again(cb, port):
    """The watch follows the new certificate: a second renewal moves the bindings again."""
    old, live, keys, s = link_pair(cb, port)
    for i in (1, 2):
        new = make_cert(["www.example.com", "example.com"], days_ago(10 - i))
        mark = s.mark()
        replace_file(live / "site.key", new.key_pem, key=True)
        s.wait_for("event=link_waiting", 5, mark)
        replace_file(live / "site.pem", new.pem)
        wait_served(port, "www.example.com", new.thumb, timeout=3.0)
        s.wait_for("event=link_renewed", 3, mark)
        assert cb.bindings() == {k: new.thumb for k in keys}
        time.sleep(0.5)  # every worker has loaded it before the files change again


def test_watched_symlinks_repointed_as_certbot_does(cb, port):
    """certbot's live/ holds symlinks into archive/; a renewal writes cert2/privkey2 and
    re-points the links. Linked through the symlinks, the bindings must follow."""
    old = make_cert(["www.example.com"], days_ago(60))
    new = make_cert(["www.example.com"], days_ago(1))
    archive, live = cb.base / "archive", cb.base / "live"
    old.write(archive, "cert1")
    live.mkdir(mode=0o755)
    os.symlink("../archive/cert1.pem", live / "fullchain.pem")
    os.symlink("../archive/cert1.key", live / "privkey.pem")
    cb.ok("add", "cert", live / "fullchain.pem", "key=%s" % (live / "privkey.pem"), "link=yes")
    cb.bind("hostnameport=www.example.com:%d" % port, old)
    s = cb.serve()
    assert served(port, "www.example.com") == old.thumb
    new.write(archive, "cert2")
    for name, target in (("fullchain.pem", "cert2.pem"), ("privkey.pem", "cert2.key")):
        tmp = live / (name + ".new")
        os.symlink("../archive/" + target, tmp)
        os.replace(tmp, live / name)
    wait_served(port, "www.example.com", new.thumb, timeout=3.0)
    s.wait_for("event=link_renewed", 3)
    assert cb.bindings() == {"hostnameport=www.example.com:%d" % port: new.thumb}
    assert cb.certs()[new.thumb]["key_path"] == str(live / "privkey.pem")
    # The target of a link rewritten in place is still seen too.
    newer = make_cert(["www.example.com"], days_ago(0))
    write_file(archive / "cert2.key", newer.key_pem, key=True)
    write_file(archive / "cert2.pem", newer.pem)
    wait_served(port, "www.example.com", newer.thumb, timeout=3.0)


def test_link_with_a_path_longer_than_the_store_keeps_is_refused(cb):
    """A linked file whose absolute name does not fit the store is refused as bad input
    (it once overflowed a stack buffer in cli/cert_import.c)."""
    cb.add_cert(make_cert(["seed.example.com"]))
    before = cb.snapshot()
    deep = cb.base
    for i in range(6):
        deep = deep / (("%d" % i) * 200)
    cert = make_cert(["www.example.com"])
    c, k = cert.write(deep, "site")
    r = cb.run("add", "cert", c, "key=%s" % k, "link=yes")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("certbind: error: ") and "too long" in r.stderr.lower(), r.stderr
    assert cb.snapshot() == before


# ---- the certbot deploy hook ----------------------------------------------


def lineage(cb, cert):
    """A certbot lineage folder: fullchain.pem (leaf, then issuer) and privkey.pem."""
    d = cb.base / "letsencrypt" / "live" / "example.com"
    d.mkdir(parents=True)
    write_file(d / "fullchain.pem", cert.pem)
    write_file(d / "privkey.pem", cert.key_pem, key=True)
    return d


def run_hook(cb, lineage_dir):
    env = cb.env(CERTBIND=BIN, CERTBIND_STATE=str(cb.state), RENEWED_DOMAINS="www.example.com")
    if lineage_dir is not None:
        env["RENEWED_LINEAGE"] = str(lineage_dir)
    return subprocess.run([str(HOOK)], capture_output=True, text=True, timeout=60, env=env)


def test_certbot_hook_moves_the_bindings_and_prunes(cb):
    ca = make_ca()
    names = ["www.example.com", "example.com"]
    old = make_cert(names, days_ago(60), issuer=ca)
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    cb.bind("ipport=0.0.0.0:8443", old)
    new = make_cert(names, days_ago(1), issuer=ca)
    assert os.access(HOOK, os.X_OK)
    r = run_hook(cb, lineage(cb, new))
    assert r.returncode == 0, r.stdout + r.stderr
    assert cb.bindings() == {"hostnameport=www.example.com:8443": new.thumb,
                             "ipport=0.0.0.0:8443": new.thumb}
    certs = cb.certs()
    assert old.thumb not in certs  # the hook prunes
    assert new.thumb in certs and certs[new.thumb]["names"] == names


def test_certbot_hook_needs_renewed_lineage(cb):
    r = run_hook(cb, None)
    assert r.returncode != 0
    assert "RENEWED_LINEAGE" in r.stderr


def test_certbot_hook_reports_a_failed_deploy(cb):
    old = make_cert(["www.example.com"], days_ago(60))
    cb.add_cert(old)
    cb.bind("hostnameport=www.example.com:8443", old)
    before = cb.snapshot()
    d = lineage(cb, make_cert(["www.example.com"], days_ago(1)))
    write_file(d / "privkey.pem", make_cert(["x"]).key_pem, key=True)  # not its key
    r = run_hook(cb, d)
    assert cb.snapshot() == before
    assert "certbind deploy failed" in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
