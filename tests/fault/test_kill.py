"""kill -9 of the supervisor's children under a continuous handshake loop, and connections
handed (certificate affinity) to a worker that dies."""

import re
import time

import pytest

import cbe2e
import faultlib as fl


def _died_problems(srv, kind, pid, index, after):
    """The `event=<kind>_died` line for pid, with the spec's fields."""
    ev = "%s_died" % kind
    lines = [l for l in srv.log()[after:].splitlines() if re.search(r"\bevent=%s\b" % ev, l)]
    if not lines:
        return ["no event=%s line for the killed %s (pid %d)" % (ev, kind, pid)]
    mine = [l for l in lines if re.search(r"\bchild_pid=%d\b" % pid, l)] or lines
    line = mine[0]
    want = [r"\bchild_pid=%d\b" % pid, r"\bsignal=9\b", r"\brestart_in_ms=\d+\b"]
    if kind == "worker":
        want.append(r"\bworker=%d\b" % index)
    missing = [w for w in want if not re.search(w, line)]
    return ["event=%s line lacks %s: %s" % (ev, missing, line)] if missing else []


CASES = [("worker", 1), ("worker", 2), ("admin", 2), ("manager", 2)]


@pytest.mark.parametrize("kind,workers", CASES, ids=["%s-w%d" % c for c in CASES])
def test_kill_each_child_under_handshake_loop(st, sites, request, kind, workers):
    """Every worker (one at a time), the admin process or the manager is killed with SIGKILL
    at a random moment while a thread keeps doing handshakes to a.test and b.test: never a
    wrong certificate, never more than MAX_GAP without a successful handshake, the killed
    process is replaced (new PID; workers log worker_ready), the died line has the spec's
    fields, SIGTERM then ends everything cleanly, no sanitizer report."""
    r = fl.rng(request.node.name)
    srv = fl.serve(st, workers=workers, admin=True)
    p = srv.procs()
    if kind == "worker":
        victims = sorted(p["workers"].items())
        assert len(victims) == workers, (p, srv.log())
    else:
        if p[kind] is None:
            pytest.skip("no %s process among serve's children (no child named cb-%s; today's "
                        "supervisor has %s)" % (kind, kind, "none" if kind == "manager" else
                                                 "one, but unnamed and not identifiable"))
        victims = [(None, p[kind])]
    problems = []
    with sites.loop() as hl:
        assert hl.wait_ok(5, 10 * fl.SLOW), "no handshake before the kills: " + hl.summary()
        for index, pid in victims:
            time.sleep(r.uniform(0.2, 1.0))  # lets a random moment of the load pass
            off = len(srv.log())
            if not srv.signal_child(pid):
                problems.append("%s pid %d was gone before the kill" % (kind, pid))
                continue
            new = fl.replaced(srv, kind, pid, index)
            if new is None:
                problems.append("%s %s (pid %d) not replaced within %ss"
                                % (kind, index, pid, fl.REPLACED_WITHIN))
            elif kind == "worker":
                rx = re.compile(r"\bevent=worker_ready\b(?=.*\bworker=%d\b)(?=.*\bchild_pid=%d\b)"
                                % (index, new))
                if not fl.poll_until(lambda: rx.search(srv.log(), off), 5 * fl.SLOW):
                    problems.append("no 'event=worker_ready worker=%d child_pid=%d' for the new worker"
                                    % (index, new))
            problems += _died_problems(srv, kind, pid, index, off)
        if not hl.wait_ok(5, 10 * fl.SLOW):
            problems.append("handshakes did not resume after the kills")
    gap, at = hl.max_gap()
    if hl.wrong():
        problems.append("wrong certificate served: %s" % hl.wrong()[:5])
    if gap > fl.MAX_GAP:
        problems.append("%.2fs without a successful handshake (from %.2fs into the loop); %s"
                        % (gap, at, hl.summary()))
    fl.check_clean_stop(srv, problems, expect_died={"%s_died" % kind: len(victims)})
    fl.verdict(srv, problems, "kill -9 %s with --workers %d (%s; max gap %.2fs)"
               % (kind, workers, hl.summary(), gap))


def _owner(thumb, workers):
    """The worker that owns a certificate under affinity (FNV-1a of the thumbprint, as
    cb_tls_entry_worker in src/tls/ctx.c). Only used to aim the kill."""
    h = 1469598103934665603
    for ch in thumb.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 32)) % workers


def test_connections_handed_to_a_dead_worker_are_served(st, pki, request):
    """--workers 2 with certificate affinity: clients keep connecting for the certificates
    one worker owns (so the other worker hands them over) while that worker is killed. No
    client hangs past the handshake timeout, none gets a wrong certificate, every client is
    served again after the kill (by the restarted worker or the accepting one)."""
    r = fl.rng(request.node.name)
    hs_timeout = 3
    port = cbe2e.free_port()
    sites = []
    for i in range(8):
        name = "h%d.fault.test" % i
        c = pki.get("fault-h%d" % i, name, [name])
        st.add_cert(c)
        st.add("hostnameport=%s:%d" % (name, port), c)
        sites.append((name, c.thumb))
    srv = fl.serve(st, workers=2, admin=True, handshake_timeout=hs_timeout)
    by_owner = {0: [], 1: []}
    for name, thumb in sites:
        by_owner[_owner(thumb, 2)].append((name, thumb))
    index = max(by_owner, key=lambda k: len(by_owner[k]))
    targets = by_owner[index]
    victim = srv.workers().get(index)
    assert victim, srv.procs()
    # The socket timeout is longer than the handshake timeout: a hang shows as a long attempt.
    loops = [fl.HandshakeLoop(port, targets[i:] + targets[:i], timeout=hs_timeout + 5, pace=0.01)
             for i in range(4)]
    problems = []
    for hl in loops:
        hl.start()
    try:
        for hl in loops:
            assert hl.wait_ok(3, 10 * fl.SLOW), "no handshake before the kill: " + hl.summary()
        time.sleep(r.uniform(0.2, 0.8))  # lets a random moment of the load pass
        t_kill = time.monotonic()
        assert srv.signal_child(victim), "worker %d gone before the kill" % index
        new = fl.replaced(srv, "worker", victim, index)
        if new is None:
            problems.append("worker %d (pid %d) not replaced" % (index, victim))
        for n, hl in enumerate(loops):
            if not fl.poll_until(lambda: any(rec[0] > t_kill and rec[3] == "ok"
                                             for rec in hl.records), 10 * fl.SLOW):
                problems.append("client %d not served after the kill: %s" % (n, hl.summary()))
    finally:
        for hl in loops:
            hl.stop()
    limit = hs_timeout + 2 * fl.SLOW
    for n, hl in enumerate(loops):
        if hl.wrong():
            problems.append("client %d got a wrong certificate: %s" % (n, hl.wrong()[:3]))
        slow = [(round(rec[1] - rec[0], 2), rec[2], rec[3]) for rec in hl.records
                if rec[1] - rec[0] > limit]
        if slow:
            problems.append("client %d: attempts longer than %ss: %s" % (n, limit, slow[:3]))
    fl.check_clean_stop(srv, problems, expect_died={"worker_died": 1})
    fl.verdict(srv, problems, "killed worker %d owning %s; %s" % (
        index, [t[0] for t in targets], "; ".join(hl.summary() for hl in loops)))
