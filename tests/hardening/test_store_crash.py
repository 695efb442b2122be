"""The store survives SIGKILL: of the commands changing it, at random moments, and of serve
right after a change."""

import json
import random
import signal
import statistics
import subprocess
import time

from conftest import SLOW, alive, figure, free_port, peer_der, tls_connect

ROUNDS = 200
KEYS = ["hostnameport=k%d.test:8443" % i for i in range(12)]


def command_for(rng, possible, certs):
    """A command that can change a binding whose value is one of `possible` (None: absent,
    else its certhash), and what it would make of it: (args, kind, new_value)."""
    if possible == {None}:
        kind = "add"
    elif None not in possible:
        kind = rng.choice(["update", "update", "delete"])
    else:
        kind = rng.choice(["add", "update", "delete"])
    new = rng.choice(certs).thumbprint
    if kind == "add":
        return ["add", "sslcert", None, "certhash=%s" % new], kind, new
    if kind == "update":
        return ["update", "sslcert", None, "certhash=%s" % new], kind, new
    return ["delete", "sslcert", None], kind, None


def applies(kind, value):
    """Would `kind` succeed on a binding whose value is `value`?"""
    return (value is None) if kind == "add" else (value is not None)


def test_sigkill_during_concurrent_changes_keeps_exactly_the_committed_state(store):
    rng = random.Random(20240607)
    certs = [store.cert("k.test", sans=["*.test", "k.test"]) for _ in range(3)]
    # How long one command takes here (under ASan it is slower): kills land inside commands.
    samples = []
    for _ in range(3):
        t0 = time.monotonic()
        store.ok("add", "sslcert", "hostnameport=probe.test:8443",
                 "certhash=%s" % certs[0].thumbprint)
        store.ok("delete", "sslcert", "hostnameport=probe.test:8443")
        samples.append((time.monotonic() - t0) / 2)
    # Up to 4 commands run at once and take turns at the store's lock, so the later ones
    # finish well after one command's time: kill over 3x that, so that some commands finish
    # and most are cut short (a slow build, e.g. under ASan on a busy machine, gets a wider
    # window and fewer rounds, about a minute of rounds in all).
    window = min(max(0.030, 3 * statistics.median(samples)), 1.0)
    rounds = max(40, min(ROUNDS, int(60 / (window + 0.1))))

    possible = {k: {None} for k in KEYS}
    tally = {"succeeded": 0, "failed": 0, "killed": 0}
    violations = []
    reasons = {}
    t_start = time.monotonic()
    for rnd in range(rounds):
        keys = rng.sample(KEYS, rng.randint(2, 4))
        procs = []
        for key in keys:
            args, kind, new = command_for(rng, possible[key], certs)
            args[2] = key
            p = subprocess.Popen(store.argv(*args), env=store.env(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append((p, key, kind, new, rng.uniform(0, window)))
        t0 = time.monotonic()
        for p, *_, at in sorted(procs, key=lambda x: x[-1]):
            delay = t0 + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p, key, kind, new, _ in procs:
            _, err = p.communicate(timeout=60 * SLOW)
            rc = p.returncode
            err = err.decode("utf-8", "replace")
            before = possible[key]
            if rc == 0:
                tally["succeeded"] += 1
                if not any(applies(kind, v) for v in before):
                    violations.append("round %d: %s %s succeeded, but the binding could only "
                                      "be %s" % (rnd, kind, key, before))
                possible[key] = {new}
            elif rc == -signal.SIGKILL:
                tally["killed"] += 1  # committed or not: both outcomes stay possible
                possible[key] = before | {new for v in before if applies(kind, v)}
            elif rc == 1:
                tally["failed"] += 1
                # Nothing changed; and the reason tells what the binding was.
                if "already exists" in err:
                    reason, told = "exists", {v for v in before if v is not None}
                elif "no binding" in err:
                    reason, told = "not found", {None} & before
                else:
                    reason, told = err.strip()[:80], before
                reasons[reason] = reasons.get(reason, 0) + 1
                if not told:
                    violations.append("round %d: %s %s failed (%s), but the binding could "
                                      "only be %s" % (rnd, kind, key, reason, before))
                possible[key] = told or before
            else:
                violations.append("round %d: %s %s exited %d: %s" % (rnd, kind, key, rc, err))
    elapsed = time.monotonic() - t_start
    figure("SIGKILL rounds: commands succeeded / failed / killed",
           "%(succeeded)d / %(failed)d / %(killed)d" % tally +
           " in %.1f s (kill window %.0f ms)" % (elapsed, window * 1000))
    figure("SIGKILL rounds: why commands failed", reasons)
    assert not violations, "\n".join(violations[:20])
    assert tally["killed"] > 0 and tally["succeeded"] > 0, tally

    # The store opens, SQLite finds nothing wrong, and it holds exactly what was committed.
    check = subprocess.run(["sqlite3", "-batch", str(store.db), "PRAGMA integrity_check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
    shown = {b["key"]: b for b in store.bindings()}
    unexpected = [k for k in shown if k not in KEYS]
    assert not unexpected, unexpected
    wrong = []
    exact = 0
    for key in KEYS:
        actual = shown[key]["certhash"] if key in shown else None
        if actual not in possible[key]:
            wrong.append("%s is %s; committed history allows only %s" % (key, actual,
                                                                        possible[key]))
        exact += len(possible[key]) == 1
    assert not wrong, "\n".join(wrong)
    figure("SIGKILL rounds: bindings whose final state was known exactly", "%d of %d" % (
        exact, len(KEYS)))
    # And it still takes changes.
    store.ok("add", "sslcert", "hostnameport=after.test:8443",
             "certhash=%s" % certs[0].thumbprint)
    assert any(b["key"] == "hostnameport=after.test:8443" for b in store.bindings())


def test_serve_killed_after_a_change_restarts_on_the_committed_state(store, serve):
    port = free_port()
    c1 = store.cert("a.test")
    c2 = store.cert("a.test")
    key = "ipport=127.0.0.1:%d" % port
    store.bind(key, c1)
    srv = serve()
    with tls_connect("127.0.0.1", port) as s:
        assert peer_der(s) == c1.der
    current = c1
    for delay in (0.0, 0.05, 0.3):
        nxt = c2 if current is c1 else c1
        store.ok("update", "sslcert", key, "certhash=%s" % nxt.thumbprint)  # committed
        time.sleep(delay)
        workers = srv.workers()
        srv.kill9()
        assert not any(alive(p) for p in workers), "workers outlived a SIGKILLed master"
        srv.start()
        with tls_connect("127.0.0.1", port) as s:
            assert peer_der(s) == nxt.der, "serve restarted on an old binding (delay %.2f)" % (
                delay)
        current = nxt
    assert json.loads(store.ok("show", "sslcert", key, "--json"))["bindings"][0][
        "certhash"] == current.thumbprint
