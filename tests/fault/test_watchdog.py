"""systemd: READY=1, then WATCHDOG=1 every WATCHDOG_USEC/2 only while every worker slot has a
ready worker: pings stop while a worker cannot be restarted, and resume once it can."""

import os
import time

import faultlib as fl

WATCHDOG_USEC = 1000000  # pings every 0.5 s


def _down_phase(srv, ns, problems):
    """Worker 0 is spared, every other worker is killed as soon as it appears (its slot
    crash-loops); returns how many were killed."""
    spare = sorted(srv.workers().items())[0][1]
    off = len(srv.log())
    killer = fl.Killer(srv, spare=[spare])
    killer.start()
    try:
        srv.wait_log(r"event=worker_died\b", 10 * fl.SLOW, after=off)
        w0 = time.monotonic() + 0.6  # one ping may have been under way when the worker died
        mark = len(srv.log())
        time.sleep(0.6 + 2.5)  # the measurement window: 2.5 s in which no ping may come
        w1 = time.monotonic()
        pings = ns.count("WATCHDOG=1", since=w0, until=w1)
        # A replacement the killer did not catch before it got ready may earn one ping.
        readies = len([l for l in srv.log()[mark:].splitlines() if "event=worker_ready" in l])
        if pings > readies:
            problems.append("%d WATCHDOG=1 in 2.5s while worker 1 was down "
                            "(%d worker_ready in that time)" % (pings, readies))
    finally:
        killer.stop()
    return len(killer.killed)


def test_watchdog_pings_only_while_every_worker_is_ready(st, sites):
    ns = fl.NotifySocket(st.dir)
    problems = []
    killed = 0
    try:
        srv = fl.serve(st, workers=2, env={"NOTIFY_SOCKET": ns.path,
                                           "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        if not fl.poll_until(lambda: ns.count("READY=1"), 5 * fl.SLOW):
            problems.append("no READY=1 (messages: %s)" % ns.msgs)
        # Healthy: at least 2 pings in 3 s (6 expected).
        t = time.monotonic()
        if not fl.poll_until(lambda: ns.count("WATCHDOG=1", since=t) >= 2, 3 * fl.SLOW):
            problems.append("healthy: %d WATCHDOG=1 in 3s (expected ~6); messages: %s"
                            % (ns.count("WATCHDOG=1", since=t), [m for _, m in ns.msgs][:5]))
        else:
            killed = _down_phase(srv, ns, problems)
            # Fixed: the slot comes back (after its backoff), then the pings resume.
            t = time.monotonic()
            if not fl.poll_until(lambda: len(srv.workers()) == 2 and
                                 ns.count("WATCHDOG=1", since=t) >= 2, 40 * fl.SLOW):
                problems.append("pings did not resume once the worker could start again "
                                "(workers %s, %d pings)"
                                % (srv.workers(), ns.count("WATCHDOG=1", since=t)))
        fl.check_clean_stop(srv, problems, rc_ok=(0,))
    finally:
        ns.close()
        try:
            os.unlink(ns.path)
        except OSError:
            pass
    fl.verdict(srv, problems, "watchdog (%d workers killed)" % killed)
