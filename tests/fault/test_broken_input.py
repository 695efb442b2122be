"""One rule for broken input: a damaged binding row, a key the service user cannot read and an
IP binding on an address this machine does not have break only their own binding, the same
way at start, on reload (store change + SIGHUP) and after a worker restart (kill -9): the
other bindings keep being served, the broken SNI binding fails its handshake with an alert
(never another binding's certificate: a 0.0.0.0 default is bound on the same port to catch a
fall-through), no worker dies that the test did not kill, and a log line names it."""

import re
import signal

import pytest

import cbe2e
import faultlib as fl

PHASES = ("start", "reload", "restart")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind", fl.BROKEN_KINDS)
def test_broken_input_breaks_only_its_binding(st, sites, kind, phase):
    problems = []
    killed = 0
    if phase == "start":
        probe, names = fl.break_store(st, kind, sites.port, sites.ip_port, sites.k)
        srv = fl.serve(st, workers=2, start=False)
        srv.start(wait_ready=False)
        rx = re.compile(r"\bevent=ready\b")
        fl.poll_until(lambda: srv.exited() or rx.search(srv.log()), cbe2e.STARTUP * fl.SLOW)
        if not rx.search(srv.log()):
            fl.verdict(srv, ["serve did not become ready (exit status %s)" % srv.proc.poll()],
                       "%s at start" % kind)
        off = 0
    else:
        srv = fl.serve(st, workers=2)
        assert fl.poll_until(lambda: sites.healthy() is None, 5 * fl.SLOW), sites.healthy()
        off = len(srv.log())
        probe, names = fl.break_store(st, kind, sites.port, sites.ip_port, sites.k)
        srv.signal(signal.SIGHUP)
    # The change has been seen once every broken thing is named in a log line.
    if not fl.poll_until(lambda: all(fl.lines_naming(srv, n, off) for n in names), 5 * fl.SLOW):
        problems.append("no log line (above level=info) names %s"
                        % [n for n in names if not fl.lines_naming(srv, n, off)])
    if phase == "restart":
        for index, pid in sorted(srv.workers().items()):
            if srv.signal_child(pid):
                killed += 1
                if fl.replaced(srv, "worker", pid, index) is None:
                    problems.append("worker %d (pid %d) not replaced" % (index, pid))
    before = srv.procs()["workers"]
    if not fl.poll_until(lambda: sites.healthy() is None, 5 * fl.SLOW):
        problems.append("healthy bindings not served: %s" % sites.healthy())
    else:
        bad = [h for h in (sites.healthy() for _ in range(10)) if h is not None]
        if bad:
            problems.append("healthy bindings failed %d of 10 handshakes: %s" % (len(bad), bad[:3]))
    if probe is not None:
        got = cbe2e.try_thumb("127.0.0.1", sites.port, probe)
        if got == sites.d.thumb:
            problems.append("%s fell through to the 0.0.0.0 default's certificate" % probe)
        elif not got.startswith("alert:") or "ALERT" not in got:
            problems.append("%s: expected a TLS alert, got %s" % (probe, got))
    after = srv.procs()["workers"]
    if after != before:
        problems.append("workers changed while serving (crash loop?): %s -> %s" % (before, after))
    fl.check_clean_stop(srv, problems, expect_died={"worker_died": killed})
    fl.verdict(srv, problems, "%s, %s" % (kind, phase))
