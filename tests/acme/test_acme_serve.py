"""serve's ACME manager end to end (design section 7), against a real Pebble: the first
certificate by TLS-ALPN-01 answered on the binding's own port, a wildcard by DNS-01
through the hook, forced renewals under a handshake loop, a restart that orders
nothing, a validation the CA refuses, and the CA going away and coming back.

One serve (two workers) and one Pebble for the module; the tests run in file order and
each brings what it needs (Env.ensure_issued). The bindings are on port P, which is
Pebble's TLS-ALPN-01 port; a default binding 0.0.0.0:P catches any fall-through."""

import datetime
import os
import pwd
import re
import time

from acmekit import (ACME_ERR, ISSUE_WITHIN, HandshakeLoop, acme_tls_handshake, db_row, dns_names,
                     file_mode_owner, handshake, hook_calls, iso, parse_iso,
                     private_key_marks, signed_by, try_verified)
from cbe2e import IS_ROOT, SERVICE_USER, SLOW, poll_until, thumb_of_der

from cryptography import x509
from cryptography.hazmat.primitives import serialization

A = "a.acme.test"
B = "b.acme.test"
WILD = "*.w.acme.test"
FAIL = "f.acme.test"
RENEWALS = 20


def assert_pebble_leaf(env, leaf, names):
    """leaf was issued by this Pebble's intermediate for exactly names."""
    inter = env.pebble.intermediate()
    assert leaf.issuer == inter.subject, (leaf.issuer, inter.subject)
    assert signed_by(leaf, inter), "not signed by Pebble's intermediate %s" % inter.subject
    assert dns_names(leaf) == sorted(names), dns_names(leaf)


def assert_valid_state(env, name, leaf):
    """show acme --json says valid with the served certificate's hash and dates."""
    s = env.state(name)
    thumb = thumb_of_der(leaf.public_bytes(serialization.Encoding.DER))
    assert s["status"] == "valid", s
    assert s["certhash"] == thumb, (s, thumb)
    assert s["not_after"] == iso(leaf.not_valid_after), (s, leaf.not_valid_after)
    ra = parse_iso(s["renew_after"])
    # Renewal is due after two thirds of the validity (or in the CA's ARI window): in any
    # case after issuance and before expiry.
    assert leaf.not_valid_before < ra < leaf.not_valid_after, (s, leaf.not_valid_before)
    assert s["last_error"] in (None, ""), s
    assert s["last_attempt"], s
    return s


def alerts_only(env, name, n):
    """n handshakes for name in a row, each failed with an alert (never a certificate)."""
    got = [handshake(env.P, name)[0] for _ in range(n)]
    return got if all(g.startswith("alert:") for g in got) else None


def test_first_certificate_by_tls_alpn_01(env):
    """A managed binding added on a running serve fails its handshakes (never the default
    binding's certificate) and logs that it waits for its first certificate; once the
    account is set, the manager obtains one from Pebble by TLS-ALPN-01 on the binding's
    port and binds it live: a client that trusts only Pebble's root and checks the name
    gets it, with the whole chain. show acme says valid with the hash and dates."""
    assert not env.account_set, "this test runs first in its module: the account is not set yet"
    env.run("add", "sslcert", env.key(A), "acme=enable")
    # Live in both workers: 10 alerts in a row (a worker that has not applied the change
    # yet falls through to the default binding, as for any binding just added).
    assert poll_until(lambda: alerts_only(env, A, 10), 10 * SLOW), (
        [handshake(env.P, A)[0] for _ in range(5)], env.srv.log()[-3000:])
    for _ in range(20):
        got = handshake(env.P, A)[0]
        assert got.startswith("alert:") and got != env.default.thumb, got
    # Other names still get the default binding: the alert is this binding's own.
    assert handshake(env.P, "other.acme.test")[0] == env.default.thumb
    waiting = [l for l in env.log_lines("handshake_failed")
               if "binding=%s " % env.key(A) in l and "first certificate" in l]
    assert waiting, env.srv.log()[-3000:]
    rc, findings, _ = env.check()
    pending = [f for f in findings if f["code"] == "acme-pending"]
    assert [f["bindings"] for f in pending] == [[env.key(A)]], findings
    assert env.log_lines("acme_order", A) == []  # no account: nothing ordered

    t0 = time.monotonic()
    env.set_account()
    root = env.root_pem()
    leaf = poll_until(lambda: try_verified(env.P, A, root), ISSUE_WITHIN, interval=0.05)
    took = time.monotonic() - t0
    assert leaf is not None, env.srv.log()[-5000:]
    print("\nfirst certificate for %s: %.2f s from 'set acme' (account registration, order, "
          "TLS-ALPN-01, finalize, bind) to the first handshake that served it" % (A, took))
    assert_pebble_leaf(env, leaf, [A])
    s = assert_valid_state(env, A, leaf)
    acct = env.show()["account"]
    assert acct["status"] == "registered" and acct["url"].startswith(
        "https://127.0.0.1:%d/" % env.pebble.port), acct
    assert env.log_lines("acme_order", A), env.srv.log()[-3000:]
    assert env.log_lines("acme_issued", A), env.srv.log()[-3000:]
    assert env.log_lines("acme_failed", A) == [], env.srv.log()[-3000:]
    # The challenge is withdrawn once the order is over: a validation finds none.
    assert poll_until(lambda: acme_tls_handshake(env.P, A).startswith("alert:"), 10 * SLOW)
    # Its expiry among the metrics.
    want = "%d" % leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc).timestamp()
    rx = re.compile(r'^certbind_certificate_not_after_seconds\{thumbprint="%s"[^}]*\} (\d+)$'
                    % s["certhash"], re.M)
    assert poll_until(lambda: (lambda m: m and m.group(1) == want)(rx.search(env.metrics())),
                      10 * SLOW), env.metrics()
    # Every worker serves it now, never the default.
    for _ in range(10):
        assert handshake(env.P, A)[0] == s["certhash"]
    rc, findings, _ = env.check()
    assert not [f for f in findings if env.key(A) in f["bindings"]
                and f["code"].startswith("acme-")], findings

    # With the account registered: from `add sslcert` to the first served certificate.
    t0 = time.monotonic()
    env.run("add", "sslcert", env.key(B), "acme=enable")
    leaf_b = poll_until(lambda: try_verified(env.P, B, root), ISSUE_WITHIN, interval=0.02)
    took_b = time.monotonic() - t0
    assert leaf_b is not None, env.srv.log()[-5000:]
    print("first certificate for %s: %.2f s from 'add sslcert' to the first handshake that "
          "served it (account already registered)" % (B, took_b))
    assert_pebble_leaf(env, leaf_b, [B])
    assert_valid_state(env, B, leaf_b)
    env.wait_orders_metric({"valid": 2, "failed": 0})
    assert env.failing_metric(A) == 0 and env.failing_metric(B) == 0
    # The status page's data: each managed binding's ACME state and its next renewal.
    import json
    import urllib.request

    def acme_of(key):
        with urllib.request.urlopen("http://%s/status.json" % env.admin, timeout=10) as r:
            doc = json.loads(r.read())
        for port in doc["ports"]:
            for b in port["bindings"]:
                if b["key"] == key:
                    return b.get("acme", "not managed")
        return None

    a_status = poll_until(lambda: (lambda a: a if isinstance(a, dict) and a["status"] == "valid"
                                   else None)(
        acme_of(env.key(A))), 10 * SLOW)
    assert a_status is not None, acme_of(env.key(A))
    assert a_status["renew_after"] > time.time() and a_status["last_error"] == "", a_status
    assert acme_of("ipport=0.0.0.0:%d" % env.P) == "not managed"


def test_wildcard_by_dns_01_through_the_hook(env):
    """A wildcard binding is obtained by DNS-01: the hook is run with add and then del
    for the name without "*.", the same value, and the certificate for *.w.acme.test is
    served to any name under it."""
    env.ensure_account()
    before = len(hook_calls(env.hook_log))
    env.run("add", "sslcert", env.key(WILD), "acme=enable")
    root = env.root_pem()
    leaf = poll_until(lambda: try_verified(env.P, "x.w.acme.test", root), ISSUE_WITHIN,
                      interval=0.05)
    assert leaf is not None, env.srv.log()[-5000:]
    assert_pebble_leaf(env, leaf, [WILD])
    assert_valid_state(env, WILD, leaf)
    assert try_verified(env.P, "other-name.w.acme.test", root) is not None
    calls = hook_calls(env.hook_log)[before:]
    assert [c[:2] for c in calls] == [("add", "w.acme.test"), ("del", "w.acme.test")], calls
    assert calls[0][2] == calls[1][2] and len(calls[0][2]) == 43, calls  # base64url SHA-256
    assert env.log_lines("acme_issued", "w.acme.test"), env.srv.log()[-3000:]
    # The wildcard serves names under it only: w.acme.test itself is the default's.
    assert handshake(env.P, "w.acme.test")[0] == env.default.thumb


def test_dns_01_without_a_working_hook_fails_cleanly(env):
    """A wildcard whose hook fails (exit 1): failed, saying which hook and its exit
    status; with no hook set: failed, saying to set one; the hook fixed, `acme renew`
    obtains it. Meanwhile the other bindings are served."""
    a = env.ensure_issued(A)
    name = "*.h.acme.test"
    bad = env.hook.parent / "failing-hook"
    bad.write_text("#!/bin/sh\necho \"failing-hook $*\" >> %s\nexit 1\n" % env.hook_log)
    os.chmod(bad, 0o755)
    env.run("set", "acme", "dnshook=%s" % bad)
    try:
        env.run("add", "sslcert", env.key(name), "acme=enable")
        s = env.wait_state(name, ("failed",))
        assert "the DNS hook %s add h.acme.test" % bad in s["last_error"], s
        assert "exit status 1" in s["last_error"], s
        assert handshake(env.P, "x.h.acme.test")[0].startswith("alert:")
        assert handshake(env.P, A)[0] == a["certhash"]
        env.run("set", "acme", "dnshook=")
        rc, out, err = env.renew(name)
        assert rc == 1, out + err
        s = env.state(name)
        assert s["status"] == "failed" and "no DNS hook is set" in s["last_error"], s
        assert "dnshook=PATH" in err, err
    finally:
        env.run("set", "acme", "dnshook=%s" % env.hook)
    rc, out, err = env.renew(name)
    assert rc == 0, out + err
    root = env.root_pem()
    leaf = poll_until(lambda: try_verified(env.P, "x.h.acme.test", root), 10 * SLOW)
    assert leaf is not None and dns_names(leaf) == [name]
    env.run("delete", "sslcert", env.key(name))


def test_forced_renewals_under_a_handshake_loop(env):
    """20 forced renewals, each waited for by `acme renew` (exit 0, a new certificate
    bound each time), while a client makes handshakes without pause: none fails, and each
    certificate it is given is one Pebble issued for the name."""
    s = env.ensure_issued(A)
    inter = env.pebble.intermediate()
    seen = {s["certhash"]}
    durations = []
    counters = env.settled_orders_metric()
    with HandshakeLoop(env.P, A) as loop:
        assert poll_until(lambda: loop.ok >= 5, 10 * SLOW), loop.failures
        t_all = time.monotonic()
        for i in range(RENEWALS):
            t0 = time.monotonic()
            rc, out, err = env.renew(A, force=True)
            durations.append(time.monotonic() - t0)
            assert rc == 0, "renewal %d: exit %d\n%s%s" % (i + 1, rc, out, err)
            now = env.state(A)
            assert now["status"] == "valid", now
            assert now["certhash"] not in seen, "renewal %d bound no new certificate: %s" % (
                i + 1, now)
            assert now["certhash"] in out, out
            seen.add(now["certhash"])
        t_all = time.monotonic() - t_all
        # The last one reaches the clients (both workers) while the loop still runs.
        last = now["certhash"]
        env.wait_served(A, last)
        ok_at_end = loop.ok
        assert poll_until(lambda: loop.ok >= ok_at_end + 20, 10 * SLOW)
    print("\n%d forced renewals in %.1f s (each %.2f s mean, %.2f s max); %d handshakes, "
          "%d failed, %d distinct certificates served"
          % (RENEWALS, t_all, sum(durations) / len(durations), max(durations), loop.ok,
             len(loop.failures), len(loop.thumbs)))
    assert loop.failures == [], loop.failures[:10]
    for thumb, der in loop.thumbs.items():
        leaf = x509.load_der_x509_certificate(der)
        assert thumb in seen, "served %s, not a certificate bound for %s" % (thumb, A)
        assert leaf.issuer == inter.subject and dns_names(leaf) == [A]
    assert last in loop.thumbs
    assert len(env.log_lines("acme_issued", A)) >= RENEWALS + 1
    env.wait_orders_metric({"valid": counters["valid"] + RENEWALS, "failed": counters["failed"]})


def test_keys_are_private_to_the_service_user_and_never_logged(env):
    """The account key and every issued key: mode 0600, owned by the user serve runs as;
    no private key material in serve's log."""
    env.ensure_issued(A)
    (path,) = db_row(env.st, "SELECT account_key_path FROM acme_account")
    assert path, "no account key path in the store"
    path = str(env.st.state / path) if not os.path.isabs(path) else path
    keys = [path] + [str(env.st.key_file(b["certhash"])) for b in env.show()["bindings"]
                     if b["certhash"]]
    assert len(keys) >= 2, keys  # the account's and at least one issued key
    uid = pwd.getpwnam(SERVICE_USER).pw_uid if IS_ROOT else os.getuid()
    log = env.srv.log()
    assert "PRIVATE KEY" not in log
    for k in keys:
        mode, owner = file_mode_owner(k)
        assert (mode, owner) == (0o600, uid), (k, oct(mode), owner)
        for mark in private_key_marks(k):
            assert mark not in log and mark.upper() not in log, "key %s in the log" % k


def test_restart_orders_nothing_and_serves_the_same_certificate(env):
    """SIGTERM, start again: the manager looks at the managed bindings (a plain `acme
    renew` is declined as not due) and orders nothing from Pebble; the same certificates
    are served."""
    a = env.ensure_issued(A)
    orders = env.pebble.orders()
    assert orders >= 1
    counters = env.settled_orders_metric()
    env.srv.stop()
    env.start_serve()
    srv = env.srv
    for _ in range(4):
        assert handshake(env.P, A)[0] == a["certhash"]
    # A plain `acme renew` is declined by the manager's walk of every managed binding,
    # the walk that picks the first one due. Twice: the second decline is a later tick,
    # so an order picked by the first walk would be logged (and at Pebble) by then; and
    # while an order runs, the manager takes no request (the command would wait for it).
    for _ in range(2):
        rc, out, err = env.renew(A)
        assert rc == 0, out + err
        assert "not due" in out, out
    assert len(srv.lines("acme_renew_declined")) == 2, srv.log()
    assert env.pebble.orders() == orders, env.pebble.log_text()[-3000:]
    assert env.settled_orders_metric() == counters
    assert srv.lines("acme_order") == [], srv.log()
    assert srv.lines("acme_issued") == []
    s = env.state(A)
    assert s["status"] == "valid" and s["certhash"] == a["certhash"], s
    assert handshake(env.P, A)[0] == a["certhash"]


def test_a_validation_the_ca_refuses(env):
    """A managed name the CA cannot validate (its DNS answers SERVFAIL to Pebble, so the
    TLS-ALPN-01 connection is never made): show acme says failed with the CA's problem,
    check exits 1 with acme-failing naming it and its next retry, `acme renew` of it exits
    1 with the error; its handshakes fail, every other binding is still served."""
    a = env.ensure_issued(A)
    counters = env.settled_orders_metric()
    env.challsrv.set_servfail(FAIL + ".")
    try:
        env.run("add", "sslcert", env.key(FAIL), "acme=enable")
        s = env.wait_state(FAIL, ("failed",))
        assert ACME_ERR in (s["last_error"] or ""), s
        assert s["certhash"] is None and s["not_after"] is None, s
        assert env.log_lines("acme_failed", FAIL), env.srv.log()[-3000:]
        env.wait_orders_metric({"valid": counters["valid"], "failed": counters["failed"] + 1})
        assert env.failing_metric(FAIL) == 1 and env.failing_metric(A) == 0
        # Its clients: an alert, never another certificate; the others: theirs.
        for _ in range(10):
            got = handshake(env.P, FAIL)[0]
            assert got.startswith("alert:"), got
        assert handshake(env.P, A)[0] == a["certhash"]
        assert handshake(env.P, "other.acme.test")[0] == env.default.thumb
        # check: an error naming it, the CA's problem and when it is tried again.
        rc, findings, _ = env.check()
        assert rc == 1, findings
        (f,) = [f for f in findings if f["code"] == "acme-failing"]
        assert f["severity"] == "error" and f["bindings"] == [env.key(FAIL)], f
        assert ACME_ERR in f["message"], f
        last = parse_iso(s["last_attempt"])
        later = [parse_iso(t) for t in re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
                                                    f["message"])]
        assert any(t >= last + datetime.timedelta(seconds=30) for t in later), (
            "no next retry in: %s" % f["message"])
        # A retry on request fails the same way, and says so.
        print("\nrefused validation: show acme last_error: %s\ncheck: %s" % (
            s["last_error"], f["message"]))
        rc, out, err = env.renew(FAIL)
        print("acme renew: exit %d: %s" % (rc, (out + err).strip()))
        assert rc == 1, out + err
        assert ACME_ERR in err, err
        s2 = env.state(FAIL)
        assert s2["status"] == "failed" and s2["last_attempt"] >= s["last_attempt"], s2
        assert handshake(env.P, A)[0] == a["certhash"]
    finally:
        env.challsrv.clear_servfail(FAIL + ".")
    env.run("delete", "sslcert", env.key(FAIL))


def test_the_ca_stopped_then_back(env):
    """Pebble stopped: a forced renewal fails cleanly (failed, the error says the CA
    cannot be reached) and the old certificate is still served; Pebble started again (a
    new CA, new accounts): `acme renew` gets a certificate from it."""
    a = env.ensure_issued(A)
    env.pebble.stop()
    try:
        rc, out, err = env.renew(A, force=True)
        print("\nCA stopped: acme renew force=yes: exit %d: %s" % (rc, (out + err).strip()))
        assert rc == 1, out + err
        s = env.state(A)
        assert s["status"] == "failed", s
        assert re.search(r"connect|reach|refused", s["last_error"] or "", re.I), s
        assert "127.0.0.1:%d" % env.pebble.port in s["last_error"], s
        assert s["certhash"] == a["certhash"], s  # still bound
        for _ in range(10):
            assert handshake(env.P, A)[0] == a["certhash"]
        rc, findings, _ = env.check()
        assert [f["bindings"] for f in findings if f["code"] == "acme-failing"] == [
            [env.key(A)]], findings
    finally:
        env.pebble.start()
    rc, out, err = env.renew(A)
    print("CA back: acme renew: exit %d: %s" % (rc, (out + err).strip()))
    assert rc == 0, out + err
    s = env.state(A)
    assert s["status"] == "valid" and s["certhash"] != a["certhash"], s
    env.wait_served(A, s["certhash"])
    leaf = try_verified(env.P, A, env.root_pem())
    assert leaf is not None
    assert_pebble_leaf(env, leaf, [A])  # the new Pebble's intermediate
    rc, findings, _ = env.check()
    assert not [f for f in findings if f["code"] == "acme-failing"], findings


def test_sigterm_during_an_order_stops_it_and_a_restart_recovers(env):
    """SIGTERM while an order waits on a DNS hook that never returns: serve stops within its
    grace (the hook is stopped, the order aborted), exit 0; started again, the binding is not
    left 'renewing' and a fixed hook obtains its certificate."""
    import signal

    name = "*.t.acme.test"
    hung = env.hook.parent / "hung-hook"
    hung.write_text("#!/bin/sh\necho \"hung-hook $*\" >> %s\nexec sleep 600\n" % env.hook_log)
    os.chmod(hung, 0o755)
    env.ensure_account()
    env.run("set", "acme", "dnshook=%s" % hung)
    try:
        env.run("add", "sslcert", env.key(name), "acme=enable")
        # The order has reached the hook (it runs as the service user, in serve's manager).
        assert poll_until(lambda: "hung-hook add t.acme.test" in env.hook_log.read_text(),
                          20 * SLOW), env.srv.log()
        t0 = time.monotonic()
        env.srv.signal(signal.SIGTERM)
        rc = env.srv.wait(30 * SLOW)
        took = time.monotonic() - t0
        print("stop with an order under way: %.2f s" % took)
        env.srv.assert_clean_exit(rc)
        # The hook's process group is gone too.
        assert not [p for p in os.listdir("/proc") if p.isdigit() and
                    _cmdline(p).startswith("sleep 600")], "the hook was left running"
        env.run("set", "acme", "dnshook=%s" % env.hook)
        env.start_serve()
        s = env.wait_state(name, ("valid",))
        assert s["status"] == "valid", s
    finally:
        env.run("set", "acme", "dnshook=%s" % env.hook)
        if env.srv is None or env.srv.proc.poll() is not None:
            env.start_serve()
    env.run("delete", "sslcert", env.key(name))


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
