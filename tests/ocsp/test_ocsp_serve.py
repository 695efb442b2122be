"""OCSP stapling end to end (design/bindings.md section 9): `certbind serve` fetches
from the responder a certificate names, caches, and staples in TLS 1.2 and 1.3; every
way a responder can fail leaves handshakes going without a staple."""

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import urllib.request

import pytest

import cbe2e
import ocspkit
from conftest import new_state

WAIT = 40 * cbe2e.SLOW  # one responder hangs for the fetch timeout (10 s) meanwhile


class Env:
    pass


def stop_own(x):
    """Stops what a fixture started (x.crafted, x.srv, x.st, x.responder; None when it did
    not get that far), each whatever happened to the one before."""
    x.crafted.close()
    try:
        if x.srv is not None:
            x.srv.stop()
    finally:
        if x.st is not None:
            x.st.cleanup()
        if x.responder is not None:
            x.responder.stop()


@pytest.fixture(scope="module")
def env(workdir, service_user):
    """The module's PKI, responders and serve. Whatever it started is stopped afterwards,
    also when its own set-up fails half-way (a responder left running would outlive the run)."""
    e = Env()
    e.pki = ocspkit.PKI(workdir / "pki-serve")
    port = cbe2e.free_port()
    e.ocsp_url = "http://127.0.0.1:%d/" % port
    e.crafted = ocspkit.CraftedResponder()
    e.responder = e.st = e.srv = None
    try:
        pki = e.pki
        e.good = pki.leaf("good", "good.test", e.ocsp_url)
        e.revoked = pki.leaf("revoked", "revoked.test", e.ocsp_url, listed="R")
        e.unknown = pki.leaf("unknown", "unknown.test", e.ocsp_url, listed=None)
        e.expired = pki.leaf("expired", "expired.test", e.crafted.url("expired"))
        e.junk = pki.leaf("junk", "junk.test", e.crafted.url("junk"))
        e.hang = pki.leaf("hang", "hang.test", e.crafted.url("hang"))
        e.down = pki.leaf("down", "down.test", "http://127.0.0.1:%d/" % cbe2e.dead_port())
        e.off = pki.leaf("off", "off.test", e.ocsp_url)
        # certhash=T1,T2: one ECDSA and one RSA certificate for one name, each with its response
        e.pair = (pki.leaf("pair-ec", "pair.test", e.ocsp_url),
                  pki.leaf("pair-rsa", "pair.test", e.ocsp_url, rsa_key=True))
        now = ocspkit.NOW()
        e.crafted.set_response("expired", pki.response(e.expired, now - datetime.timedelta(days=2),
                                                       now - datetime.timedelta(days=1)))
        e.responder = ocspkit.OpenSSLResponder(pki, port, workdir / "openssl-ocsp.log").start()
        e.st = new_state(workdir, "ocsp-serve", service_user)
        e.port = cbe2e.free_port()
        for leaf in (e.good, e.revoked, e.unknown, e.expired, e.junk, e.hang, e.down, e.off) + e.pair:
            e.st.run("add", "cert", leaf.chain_path, "key=%s" % leaf.key_path)
        for name, leaf in (("good", e.good), ("revoked", e.revoked), ("unknown", e.unknown),
                           ("expired", e.expired), ("junk", e.junk), ("hang", e.hang),
                           ("down", e.down)):
            e.st.add("hostnameport=%s.test:%d" % (name, e.port), leaf.thumb)
        # The same certificate on two bindings, one of them with stapling off.
        e.st.add("hostnameport=good-off.test:%d" % e.port, e.good.thumb, disableocspstapling="enable")
        # A certificate whose only binding staples nothing: even a valid cached response for it
        # (put there before serve starts) is never sent, and nothing is fetched for it.
        e.st.add("hostnameport=off.test:%d" % e.port, e.off.thumb, disableocspstapling="enable")
        ocsp_dir = e.st.state / "ocsp"
        ocsp_dir.mkdir(mode=0o755, exist_ok=True)
        (ocsp_dir / (e.off.thumb + ".der")).write_bytes(
            pki.response(e.off, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)))
        # In down's cache, a valid "good" response of another certificate (good's): it must
        # never be stapled for down, whose own responder never answers.
        (ocsp_dir / (e.down.thumb + ".der")).write_bytes(
            pki.response(e.good, now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)))
        # In junk's cache, a damaged file (cut short): never stapled, and no worker minds.
        (ocsp_dir / (e.junk.thumb + ".der")).write_bytes(b"\x30\x82\x01\x00garbage")
        if service_user is not None:  # the manager writes here as the service user
            os.chown(ocsp_dir, service_user.pw_uid, service_user.pw_gid)
        e.admin_port = cbe2e.free_port()
        e.srv = e.st.serve(admin="127.0.0.1:%d" % e.admin_port).start()
        yield e
    finally:
        stop_own(e)


def handshake(env, name, tls):
    rc, out = ocspkit.staple_text(env.port, name + ".test", tls)
    assert "CONNECTED" in out and ("Cipher is (NONE)" not in out), out
    return out


def wait_staple(env, name, tls):
    out = cbe2e.poll_until(lambda: (lambda o: o if ocspkit.stapled(o) else None)(handshake(env, name, tls)),
                           WAIT, 0.2)
    assert out, "no staple for %s within %ss:\n%s" % (name, WAIT, handshake(env, name, tls))
    return out


@pytest.mark.parametrize("tls", ["-tls1_2", "-tls1_3"])
def test_good_response_is_stapled(env, tls):
    env.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % env.good.thumb, WAIT)
    out = wait_staple(env, "good", tls)
    assert "Cert Status: good" in out, out
    # The staple is this certificate's: its serial number is the one in the response.
    serial = "%X" % env.good.serial
    m = re.search(r"Serial Number: ([0-9A-F]+)", out)
    assert m and m.group(1).lstrip("0") == serial.lstrip("0"), out


def test_cached_response_verifies_with_openssl(env):
    env.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % env.good.thumb, WAIT)
    der = env.st.state / "ocsp" / (env.good.thumb + ".der")
    p = subprocess.run(["openssl", "ocsp", "-respin", str(der), "-issuer", str(env.pki.ca_path),
                        "-cert", str(env.good.cert_path), "-CAfile", str(env.pki.ca_path)],
                       capture_output=True, text=True)
    assert "Response verify OK" in p.stdout + p.stderr, p.stdout + p.stderr
    assert "%s: good" % env.good.cert_path in p.stdout, p.stdout


def test_binding_with_stapling_disabled_gets_none(env):
    wait_staple(env, "good", "-tls1_3")  # the same certificate staples on its other binding
    for name in ("good-off", "off"):
        for tls in ("-tls1_2", "-tls1_3"):
            out = handshake(env, name, tls)
            assert ocspkit.no_staple(out), out
    assert env.off.thumb not in env.srv.log()  # never fetched


def test_revoked_is_not_stapled(env):
    # As nginx: only a "good" answer is stapled; "revoked" is logged as an error.
    env.srv.wait_log(r"event=ocsp_revoked certhash=%s\b" % env.revoked.thumb, WAIT)
    assert not (env.st.state / "ocsp" / (env.revoked.thumb + ".der")).exists()
    for tls in ("-tls1_2", "-tls1_3"):
        assert ocspkit.no_staple(handshake(env, "revoked", tls))


@pytest.mark.parametrize("name,reason", [
    ("unknown", r"status unknown"),
    ("expired", r"expired"),
    ("junk", r"not an OCSP response"),
    ("down", r"responder"),
])
def test_failed_fetch_serves_without_staple(env, name, reason):
    leaf = getattr(env, name)
    line = env.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b.*" % leaf.thumb, WAIT)
    assert re.search(reason, line), line
    assert "retry_in_s=" in line, line
    for tls in ("-tls1_2", "-tls1_3"):
        assert ocspkit.no_staple(handshake(env, name, tls))


def test_damaged_or_foreign_cached_response_is_never_stapled(env):
    assert (env.st.state / "ocsp" / (env.down.thumb + ".der")).exists()
    assert (env.st.state / "ocsp" / (env.junk.thumb + ".der")).exists()
    for name in ("down", "junk"):
        for tls in ("-tls1_2", "-tls1_3"):
            assert ocspkit.no_staple(handshake(env, name, tls))
    env.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b" % env.down.thumb, WAIT)
    assert "event=ocsp_cached certhash=%s" % env.down.thumb not in env.srv.log()


def test_failures_are_logged_once_per_reason(env):
    env.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b" % env.junk.thumb, WAIT)
    # The next try is a minute away or more: one line, not one per tick.
    assert len([l for l in env.srv.lines("ocsp_fetch_failed") if env.junk.thumb in l]) == 1


def test_hanging_responder_never_blocks_handshakes(env):
    assert env.crafted.hung.wait(WAIT), env.srv.log()
    # While the manager waits on the responder, every worker handshake goes on.
    for _ in range(5):
        for name in ("hang", "good", "junk"):
            out = handshake(env, name, "-tls1_3")
            assert "TLSv1.3" in out, out
    line = env.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b.*" % env.hang.thumb, WAIT)
    assert re.search(r"[Tt]imeout|timed out", line), line
    assert ocspkit.no_staple(handshake(env, "hang", "-tls1_2"))


def test_metrics(env):
    wait_staple(env, "good", "-tls1_2")
    env.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b" % env.down.thumb, WAIT)

    def scrape():
        url = "http://127.0.0.1:%d/metrics" % env.admin_port
        return urllib.request.urlopen(url, timeout=10).read().decode()

    def ready():
        t = scrape()
        m = re.search(r"^certbind_ocsp_staples_served_total (\d+)$", t, re.M)
        f = re.search(r"^certbind_ocsp_fetch_failures_total (\d+)$", t, re.M)
        return t if m and int(m.group(1)) >= 1 and f and int(f.group(1)) >= 1 else None

    text = cbe2e.poll_until(ready, WAIT, 0.2)
    assert text, scrape()
    m = re.search(r'^certbind_ocsp_response_age_seconds\{thumbprint="%s"\} (-?\d+)$' % env.good.thumb,
                  text, re.M)
    assert m and 0 <= int(m.group(1)) < 86400, text
    assert 'ocsp_response_age_seconds{thumbprint="%s"}' % env.revoked.thumb not in text


def test_restart_staples_the_cached_response_before_any_fetch(workdir, service_user, env):
    port = cbe2e.free_port()
    leaf = env.pki.leaf("restart", "restart.test", "http://127.0.0.1:%d/" % port)
    responder = ocspkit.OpenSSLResponder(env.pki, port, workdir / "openssl-ocsp-restart.log").start()
    st = new_state(workdir, "ocsp-restart", service_user)
    try:
        st.run("add", "cert", leaf.chain_path, "key=%s" % leaf.key_path)
        tls_port = cbe2e.free_port()
        st.add("hostnameport=restart.test:%d" % tls_port, leaf.thumb)
        srv = st.serve().start()
        srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % leaf.thumb, WAIT)
        srv.stop()
        responder.stop()  # from now on, nothing answers at that URL
        srv2 = st.serve().start()
        rc, out = ocspkit.staple_text(tls_port, "restart.test", "-tls1_3")
        assert ocspkit.stapled(out) and "Cert Status: good" in out, out
        srv2.wait_log(r"event=ocsp_cached certhash=%s\b" % leaf.thumb, WAIT)
        assert "event=ocsp_fetched" not in srv2.log()
        srv2.stop()
    finally:
        st.cleanup()
        responder.stop()


def test_check_reports_missing_and_must_staple(workdir, service_user, env):
    st = new_state(workdir, "ocsp-check", service_user)
    # A responder of its own, started once its leaves are in the index (openssl ocsp
    # reads the index again only when it sees it changed, not at every request).
    port = cbe2e.free_port()
    url = "http://127.0.0.1:%d/" % port
    plain = env.pki.leaf("chk-plain", "plain.test", url)
    must = env.pki.leaf("chk-must", "must.test", url, must_staple=True)
    off = env.pki.leaf("chk-off", "offc.test", url)
    responder = ocspkit.OpenSSLResponder(env.pki, port, workdir / "openssl-ocsp-check.log").start()
    try:
        for leaf in (plain, must, off):
            st.run("add", "cert", leaf.chain_path, "key=%s" % leaf.key_path)
        tls_port = cbe2e.free_port()
        st.add("hostnameport=plain.test:%d" % tls_port, plain.thumb)
        st.add("hostnameport=must.test:%d" % tls_port, must.thumb)
        st.add("hostnameport=offc.test:%d" % tls_port, off.thumb, disableocspstapling="enable")
        # plain's certificate on two more bindings: one staples (named in its finding), one
        # does not (never named in an OCSP finding).
        st.add("hostnameport=plain2.test:%d" % tls_port, plain.thumb)
        st.add("hostnameport=plain-off.test:%d" % tls_port, plain.thumb,
               disableocspstapling="enable")

        def findings():
            rc, out, _ = st.run("--json", "check", check=False)
            return rc, {(f["code"], frozenset(f["bindings"])): f
                        for f in json.loads(out)["findings"]}

        rc, f = findings()
        assert rc == 1, f
        key_plain = ("ocsp-unavailable", frozenset(("hostnameport=plain.test:%d" % tls_port,
                                                    "hostnameport=plain2.test:%d" % tls_port)))
        key_must = ("ocsp-must-staple", frozenset(("hostnameport=must.test:%d" % tls_port,)))
        assert key_plain in f and f[key_plain]["severity"] == "warning", f
        assert key_must in f and f[key_must]["severity"] == "error", f
        assert "disableocspstapling=enable" in f[key_plain]["message"]
        assert "must-staple" in f[key_must]["message"]
        assert not any("offc.test" in b or "plain-off.test" in b
                       for (code, bs) in f if code.startswith("ocsp-") for b in bs), f
        # serve fetches both; check then finds nothing about OCSP.
        srv = st.serve().start()
        for leaf in (plain, must):
            srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % leaf.thumb, WAIT)
        rc, out = ocspkit.staple_text(tls_port, "must.test", "-tls1_2")
        assert ocspkit.stapled(out), out
        srv.stop()
        rc, f = findings()
        assert not any(code.startswith("ocsp-") for (code, _) in f), f
    finally:
        st.cleanup()
        responder.stop()


def test_testssl_reports_stapling_offered(workdir, env):
    tool = shutil.which("testssl") or shutil.which("testssl.sh")
    if tool is None:
        pytest.skip("testssl.sh is not installed")
    wait_staple(env, "good", "-tls1_2")
    report = workdir / "testssl-ocsp.json"
    # -S: the server defaults, where testssl.sh tells whether OCSP stapling is offered.
    r = subprocess.run([tool, "--quiet", "--color", "0", "--warnings", "batch", "--jsonfile",
                        str(report), "-S", "--ip", "127.0.0.1", "--sneaky",
                        "https://good.test:%d" % env.port],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert report.exists(), "testssl.sh wrote no report (rc=%d): %s" % (r.returncode, r.stdout[-2000:])
    found = {f["id"]: f for f in json.loads(report.read_text())}
    assert "OCSP_stapling" in found, r.stdout[-3000:]
    assert found["OCSP_stapling"]["finding"].startswith("offered"), found["OCSP_stapling"]


def test_manager_killed_mid_fetch_is_restarted_and_handshakes_go_on(workdir, service_user, env):
    """Fault injection: the manager dies (SIGKILL) while a responder holds its fetch. Workers
    keep serving, with the cached staple; the master starts a new manager, which finds the
    cached response still good and asks nothing."""
    st = new_state(workdir, "ocsp-kill", service_user)
    try:
        port = cbe2e.free_port()
        resp_port = cbe2e.free_port()
        good = env.pki.leaf("kill-good", "kgood.test", "http://127.0.0.1:%d/" % resp_port)
        stuck = env.pki.leaf("kill-hang", "khang.test", env.crafted.url("hang-kill"))
        responder = ocspkit.OpenSSLResponder(env.pki, resp_port, workdir / "openssl-kill.log").start()
        for leaf, name in ((good, "kgood"), (stuck, "khang")):
            st.run("add", "cert", leaf.chain_path, "key=%s" % leaf.key_path)
            st.add("hostnameport=%s.test:%d" % (name, port), leaf.thumb)
        srv = st.serve().start()
        srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % good.thumb, WAIT)
        held = cbe2e.poll_until(lambda: env.crafted.held.get("hang-kill"), WAIT, 0.1)
        assert held is not None and held.wait(WAIT), srv.log()
        pid = ocspkit.manager_pid(srv)
        assert pid is not None, srv.log()
        os.kill(pid, signal.SIGKILL)
        for _ in range(3):
            rc, out = ocspkit.staple_text(port, "kgood.test", "-tls1_3")
            assert ocspkit.stapled(out) and "Cert Status: good" in out, out
        new = cbe2e.poll_until(lambda: (lambda p: p if p not in (None, pid) else None)(
            ocspkit.manager_pid(srv)), WAIT, 0.1)
        assert new, srv.log()
        srv.wait_log(r"event=ocsp_cached certhash=%s\b" % good.thumb, WAIT)
        assert len(srv.lines("ocsp_fetched")) == 1, srv.log()
        srv.stop()
        responder.stop()
    finally:
        st.cleanup()



def test_a_pair_staples_the_response_of_the_certificate_served(env):
    """certhash=T1,T2 (one ECDSA, one RSA): each certificate's own response is fetched, and a
    client gets the one of the certificate it was served, never the other's."""
    ec_leaf, rsa_leaf = env.pair
    env.st.run("add", "sslcert", "hostnameport=pair.test:%d" % env.port,
               "certhash=%s,%s" % (ec_leaf.thumb, rsa_leaf.thumb))
    for leaf in env.pair:
        env.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % leaf.thumb, WAIT)
    rsa_only = ("-sigalgs", "rsa_pss_rsae_sha256:RSA+SHA256")
    for tls in ("-tls1_2", "-tls1_3"):
        cipher = ("-cipher", "ECDHE-RSA-AES128-GCM-SHA256") if tls == "-tls1_2" else ()
        for leaf, extra in ((ec_leaf, ()), (rsa_leaf, rsa_only + cipher)):
            def staple_for():
                rc, out = cbe2e.s_client("127.0.0.1", env.port, sni="pair.test",
                                         extra=("-status", tls) + extra)
                return out if ocspkit.stapled(out) else None
            out = cbe2e.poll_until(staple_for, WAIT, 0.2)
            assert out, "no staple for %s (%s)" % (leaf.thumb, tls)
            m = re.search(r"Serial Number: ([0-9A-F]+)", out)
            assert m and m.group(1).lstrip("0") == ("%X" % leaf.serial).lstrip("0"), (tls, out)


class Own:
    pass


@contextlib.contextmanager
def own_responders(workdir, service_user, env, name, make_leaves):
    """For a test that needs responders of its own: an `openssl ocsp` at o.url and a crafted
    one (o.crafted); make_leaves(o) makes the test's leaves on env.pki before the first starts
    (it reads its index when it starts) and returns them (o.leaves); a fresh state folder
    (o.st) and a TLS port (o.tls_port) for the serve the test starts (o.srv). Everything is
    stopped and removed afterwards, whatever happened."""
    o = Own()
    port = cbe2e.free_port()
    o.url = "http://127.0.0.1:%d/" % port
    o.crafted = ocspkit.CraftedResponder()
    o.responder = o.st = o.srv = None
    try:
        o.leaves = make_leaves(o)
        o.responder = ocspkit.OpenSSLResponder(env.pki, port,
                                               workdir / ("openssl-ocsp-%s.log" % name)).start()
        o.st = new_state(workdir, "ocsp-" + name, service_user)
        o.tls_port = cbe2e.free_port()
        yield o
    finally:
        stop_own(o)


def batch_run(o, lines, name="batch.txt"):
    batch = o.st.dir / name
    batch.write_text("".join(lines))
    o.st.run("-f", batch)


def add_certs(o, leaves):
    batch_run(o, ["add cert %s key=%s\n" % (l.chain_path, l.key_path) for l in leaves])


def change_seen(o, lines, mark):
    """Runs lines as one batch with a binding of certificate `mark` (with a good response)
    and waits for that certificate to be fetched: the manager has then seen the change."""
    batch_run(o, lines + ["add sslcert hostnameport=%s:%d certhash=%s\n"
                          % (mark.name, o.tls_port, mark.thumb)])
    o.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % mark.thumb, WAIT)


def test_a_hanging_responder_holds_one_fetch_while_the_others_go_on(workdir, service_user, env):
    """Fetches run side by side and the next starts as one ends: while one responder holds
    its request until the fetch times out, the certificates bound meanwhile are fetched and
    stapled. (One fetch at a time, one a second, would have waited for the timeout first.)"""
    def leaves(o):
        o.hang = env.pki.leaf("many-hang", "many-hang.test", o.crafted.url("hang-many"))
        return [env.pki.leaf("many%d" % i, "many%d.test" % i, o.url) for i in range(12)]

    with own_responders(workdir, service_user, env, "many", leaves) as o:
        add_certs(o, o.leaves + [o.hang])
        o.st.add("hostnameport=many-hang.test:%d" % o.tls_port, o.hang.thumb)
        o.srv = o.st.serve().start()
        assert cbe2e.poll_until(lambda: "hang-many" in o.crafted.held, WAIT, 0.1), o.srv.log()
        # The hanging fetch is under way: bind the rest in one change.
        batch_run(o, ["add sslcert hostnameport=many%d.test:%d certhash=%s\n"
                      % (i, o.tls_port, l.thumb) for i, l in enumerate(o.leaves)])
        for l in o.leaves:
            o.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % l.thumb, WAIT)
        log = o.srv.log()
        hang_failed = re.search(r"event=ocsp_fetch_failed certhash=%s\b" % o.hang.thumb, log)
        last_fetched = max(log.index("event=ocsp_fetched certhash=%s" % l.thumb)
                           for l in o.leaves)
        assert hang_failed is None or hang_failed.start() > last_fetched, log
        for i in (0, 11):
            rc, out = ocspkit.staple_text(o.tls_port, "many%d.test" % i, "-tls1_3")
            assert ocspkit.stapled(out) and "Cert Status: good" in out, out
        # The held one times out as any other failure does, and is tried again later.
        line = o.srv.wait_log(r"event=ocsp_fetch_failed certhash=%s\b.*" % o.hang.thumb, WAIT)
        assert re.search(r"[Tt]imeout|timed out", line), line


def test_a_store_from_before_ocsp_urls_were_recorded_is_learned_once(workdir, service_user, env):
    """Schema 8 records at import whether a certificate names an OCSP responder. A row
    stored before says "not known" (0): serve reads its file as before, staples, and
    records what it found (2: a responder, 1: none), so that a later start need not read
    the file to learn it."""
    def leaves(o):
        return [env.pki.leaf("old-url", "old-url.test", o.url),
                env.pki.leaf("old-none", "old-none.test", None)]

    with own_responders(workdir, service_user, env, "old-rows", leaves) as o:
        with_url, without = o.leaves
        add_certs(o, o.leaves)
        o.st.add("hostnameport=old-url.test:%d" % o.tls_port, with_url.thumb)
        o.st.add("hostnameport=old-none.test:%d" % o.tls_port, without.thumb)
        db = str(o.st.state / "certbind.db")

        def recorded():
            with sqlite3.connect(db) as con:
                return dict(con.execute("SELECT thumbprint, ocsp_url FROM certs"))

        want = {with_url.thumb: 2, without.thumb: 1}
        assert recorded() == want  # at import
        with sqlite3.connect(db) as con:
            con.execute("UPDATE certs SET ocsp_url = 0")  # as a store before schema 8
        o.srv = o.st.serve().start()
        o.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % with_url.thumb, WAIT)
        assert cbe2e.poll_until(lambda: recorded() == want, WAIT, 0.2), recorded()
        rc, out = ocspkit.staple_text(o.tls_port, "old-url.test", "-tls1_3")
        assert ocspkit.stapled(out) and "Cert Status: good" in out, out
        rc, out = ocspkit.staple_text(o.tls_port, "old-none.test", "-tls1_3")
        assert ocspkit.no_staple(out), out
        assert not o.srv.lines("ocsp_facts_failed"), o.srv.log()


def test_a_certificate_unbound_and_bound_again_mid_fetch_is_not_fetched_twice(
        workdir, service_user, env):
    """A binding removed while its certificate's fetch is under way, and added back before the
    fetch ends: the certificate waits for that fetch (one request at its responder), rather
    than start a second one that would write the same cache file at the same time. Each step
    is known to be seen by the manager from a certificate bound in the same change whose
    response is then logged as fetched."""
    def leaves(o):
        o.held = env.pki.leaf("dup-held", "dup-held.test", o.crafted.url("hang-dup"))
        return [env.pki.leaf("dup-mark%d" % i, "dup-mark%d.test" % i, o.url) for i in range(2)]

    with own_responders(workdir, service_user, env, "dup", leaves) as o:
        add_certs(o, [o.held] + o.leaves)
        key = "hostnameport=dup-held.test:%d" % o.tls_port
        o.st.add(key, o.held.thumb)
        o.srv = o.st.serve().start()
        assert cbe2e.poll_until(lambda: "hang-dup" in o.crafted.held, WAIT, 0.1), o.srv.log()
        change_seen(o, ["delete sslcert %s\n" % key], o.leaves[0])  # no longer bound
        change_seen(o, ["add sslcert %s certhash=%s\n" % (key, o.held.thumb)], o.leaves[1])
        assert o.crafted.requests.get("hang-dup") == 1, (o.crafted.requests, o.srv.log())
        assert not re.search(r"event=ocsp_fetch_failed certhash=%s\b" % o.held.thumb,
                             o.srv.log())


def test_a_certificate_whose_bindings_all_go_is_dropped_even_after_a_second_binding(
        workdir, service_user, env):
    """The schedule follows bindings through the change log: a certificate bound by b, then
    by a as well (a key that sorts first), then by neither, is dropped from the schedule;
    bound again by c, it is looked at anew (its cached response announced). The manager
    seeing each change is known from a certificate bound in the same change being fetched."""
    def leaves(o):
        o.cert = env.pki.leaf("drop-t", "drop.test", o.url)
        return [env.pki.leaf("drop-mark%d" % i, "drop-mark%d.test" % i, o.url) for i in range(3)]

    with own_responders(workdir, service_user, env, "drop", leaves) as o:
        add_certs(o, [o.cert] + o.leaves)
        keys = {n: "hostnameport=%s.drop.test:%d" % (n, o.tls_port) for n in "abc"}
        o.st.add(keys["b"], o.cert.thumb)
        o.srv = o.st.serve().start()
        o.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % o.cert.thumb, WAIT)
        change_seen(o, ["add sslcert %s certhash=%s\n" % (keys["a"], o.cert.thumb)], o.leaves[0])
        change_seen(o, ["delete sslcert %s\n" % keys["a"], "delete sslcert %s\n" % keys["b"]],
                    o.leaves[1])
        after = len(o.srv.log())
        change_seen(o, ["add sslcert %s certhash=%s\n" % (keys["c"], o.cert.thumb)], o.leaves[2])
        o.srv.wait_log(r"event=ocsp_cached certhash=%s\b" % o.cert.thumb, WAIT, after=after)


def test_certificates_without_a_responder_get_no_entry_and_the_others_still_staple(
        workdir, service_user, env):
    """A certificate the store knows at import to name no responder gets no place in the
    schedule (at 10^6 such certificates that was ~160 MB in the manager): at start, in a
    pair whose other certificate staples, and when bound again at run time. The others
    still staple: the pair's RSA certificate at start, a certificate that replaces the one
    without a responder on its binding at run time."""
    def leaves(o):
        o.none = env.pki.leaf("nores", "nores.test", None)
        o.pair = (env.pki.leaf("nores-ec", "nores-pair.test", None),
                  env.pki.leaf("nores-rsa", "nores-pair.test", o.url, rsa_key=True))
        return [env.pki.leaf("nores-late", "nores.test", o.url)]

    with own_responders(workdir, service_user, env, "nores", leaves) as o:
        late = o.leaves[0]
        add_certs(o, [o.none, late] + list(o.pair))
        key = "hostnameport=nores.test:%d" % o.tls_port
        o.st.add(key, o.none.thumb)
        o.st.run("add", "sslcert", "hostnameport=nores-pair.test:%d" % o.tls_port,
                 "certhash=%s,%s" % (o.pair[0].thumb, o.pair[1].thumb))
        o.srv = o.st.serve().start()
        o.srv.wait_log(r"event=ocsp_fetched certhash=%s\b" % o.pair[1].thumb, WAIT)
        # The schedule holds the pair's RSA certificate alone, not the two without one.
        scans = o.srv.lines("ocsp_scanned")
        assert scans and all("certificates=1" in l for l in scans), o.srv.log()
        rsa_only = ("-sigalgs", "rsa_pss_rsae_sha256:RSA+SHA256")
        rc, out = cbe2e.s_client("127.0.0.1", o.tls_port, sni="nores-pair.test",
                                 extra=("-status", "-tls1_3") + rsa_only)
        assert ocspkit.stapled(out) and "Cert Status: good" in out, out
        # Bound again under another name, and replaced on its own binding (nores.test, in
        # the same change) by one that staples: the replacement is fetched, the one without
        # a responder never is.
        change_seen(o, ["add sslcert hostnameport=nores2.test:%d certhash=%s\n"
                        % (o.tls_port, o.none.thumb),
                        "delete sslcert %s\n" % key], late)

        def late_stapled():
            rc, out = ocspkit.staple_text(o.tls_port, "nores.test", "-tls1_3")
            return out if ocspkit.stapled(out) else None
        out = cbe2e.poll_until(late_stapled, WAIT, 0.2)
        assert out and "Cert Status: good" in out, o.srv.log()
        rc, out = ocspkit.staple_text(o.tls_port, "nores2.test", "-tls1_3")
        assert ocspkit.no_staple(out), out
        for leaf in (o.none, o.pair[0]):
            assert not re.search(r"certhash=%s\b" % leaf.thumb, o.srv.log()), o.srv.log()
