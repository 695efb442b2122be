"""The admin process under the master: restarted when killed, counters kept; SIGTERM stops all."""

import os
import re
import signal

import adminlib as al
import cbe2e
from cbe2e import TLSConn, free_port


def _setup(st, backends=None):
    a = al.make_cert_days(st.dir, "a", "a.test")
    st.add_cert(a)
    P = free_port()
    key = "hostnameport=a.test:%d" % P
    if backends is not None:
        st.add(key, a, backend=backends(cbe2e.echo_handler).addr)
    else:
        st.add(key, a)
    return P, key, a


def _comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def _stop_expecting(srv, died_event):
    """SIGTERM; exit 0 and a clean log except for the one `died_event` the test caused."""
    srv.signal(signal.SIGTERM)
    rc = srv.wait(30 * al.SLOW)
    log = srv.log()
    assert rc == 0, "serve exited %d; log:\n%s" % (rc, log)
    assert "event=stopped" in log, log
    assert len(srv.lines(died_event)) == 1, log
    for other in ("worker_died", "admin_died"):
        if other != died_event:
            assert not srv.lines(other), log
    for report in cbe2e.SANITIZER_REPORTS:
        assert report not in log, log


def test_admin_is_restarted_when_killed_and_counters_survive(st):
    P, key, a = _setup(st)
    addr, port = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()
    for _ in range(3):
        assert cbe2e.served_thumb("127.0.0.1", P, "a.test") == a.thumb
    al.poll_metrics(addr, lambda m: m.binding("certbind_handshakes_total", key) == 3,
                    what="3 handshakes")
    workers = sorted(w["pid"] for w in al.status(addr)["workers"])
    old = al.admin_pid(srv)
    # It is the last child the master started.
    assert srv.children()[-1] == old, (srv.children(), old)

    os.kill(old, signal.SIGKILL)
    line = srv.wait_log(r"event=admin_died\b", 10 * al.SLOW)
    assert "signal=9" in line, line

    def back():
        try:
            s = al.status(addr)
        except OSError:
            return None
        return s

    assert cbe2e.poll_until(back, al.WAIT, 0.1), "the admin port did not come back:\n" + srv.log()
    new = al.admin_pid(srv)
    assert new != old and al.alive(new) and not al.alive(old)
    # The workers were not touched, and their counters are all there.
    assert sorted(w["pid"] for w in al.status(addr)["workers"]) == workers
    assert sorted(p for p in srv.children() if p != new and _comm(p).startswith("cb-worker")) == workers
    m = al.scrape(addr)
    assert m.binding("certbind_handshakes_total", key) == 3, m.text
    assert m.get("certbind_connections_accepted_total") == 3
    assert m.get("certbind_workers") == 2
    # And keeps counting.
    assert cbe2e.served_thumb("127.0.0.1", P, "a.test") == a.thumb
    al.poll_metrics(addr, lambda m: m.binding("certbind_handshakes_total", key) == 4,
                    what="the 4th handshake counted by the new admin process")
    _stop_expecting(srv, "admin_died")
    assert al.connect_refused(addr)


def test_sigterm_stops_serve_and_admin_with_exit_0(st):
    P, key, a = _setup(st)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()
    kids = srv.children()
    names = sorted(_comm(p) for p in kids)
    assert names == ["cb-admin", "cb-manager", "cb-worker-0", "cb-worker-1"], names
    assert al.request(addr, "/").status == 200
    srv.stop()  # exit 0, event=stopped, no worker_died or admin_died
    assert not [p for p in kids if al.alive(p)], kids
    assert al.connect_refused(addr)
    assert cbe2e.connect_refused("127.0.0.1", P)


def test_killed_worker_keeps_its_counters_and_its_open_gauge_resets(st, backends):
    """A restarted worker continues its predecessor's area: counters kept, open gauges zero."""
    P, key, a = _setup(st, backends)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr).start()
    done = []
    for _ in range(2):
        with TLSConn("127.0.0.1", P, sni="a.test") as c:
            assert c.echo(b"abc") == b"abc"
        done.append(1)
    held = TLSConn("127.0.0.1", P, sni="a.test")
    try:
        assert held.echo(b"hold") == b"hold"
        al.poll_metrics(addr, lambda m: m.binding("certbind_open_connections", key) == 1
                        and m.binding("certbind_handshakes_total", key) == 3,
                        what="3 handshakes, 1 open")
        worker = al.status(addr)["workers"][0]["pid"]
        os.kill(worker, signal.SIGKILL)
        srv.wait_log(r"event=worker_died\b", 10 * al.SLOW)
        m = al.poll_metrics(
            addr, lambda m: any(w["pid"] not in (0, worker) for w in al.status(addr)["workers"])
            and m.binding("certbind_open_connections", key) == 0
            and m.get("certbind_connections_open") == 0,
            what="the restarted worker's open gauges at 0")
    finally:
        held.close()
    assert m.binding("certbind_handshakes_total", key) == 3, m.text
    assert m.binding("certbind_received_bytes_total", key) == 3 + 3 + 4, m.text
    assert m.get("certbind_connections_accepted_total") == 3
    cbe2e.poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "a.test") == a.thumb, al.WAIT)
    al.poll_metrics(addr, lambda m: m.binding("certbind_handshakes_total", key) == 4
                    and m.get("certbind_workers") == 1,
                    what="the new worker counting on top of the old")
    _stop_expecting(srv, "worker_died")


def test_metrics_stay_up_while_workers_drain(st, backends):
    """SIGTERM: the workers drain first; the admin port answers until the last one is gone."""
    P, key, a = _setup(st, backends)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr, grace=30).start()
    held = TLSConn("127.0.0.1", P, sni="a.test")
    try:
        assert held.echo(b"hold") == b"hold"
        al.poll_metrics(addr, lambda m: m.binding("certbind_open_connections", key) == 1,
                        what="1 open connection")
        srv.signal(signal.SIGTERM)
        srv.wait_log(r"event=draining\b", 10 * al.SLOW)
        # Draining: still open, and still visible on the admin port.
        m = al.poll_metrics(addr, lambda m: m.binding("certbind_open_connections", key) == 1,
                            what="the open connection seen during the drain")
        assert m.get("certbind_connections_open") == 1, m.text
        assert srv.proc.poll() is None
        assert held.echo(b"still") == b"still"
    finally:
        held.close()
    rc = srv.wait(30 * al.SLOW)
    srv.assert_clean_exit(rc)
    assert al.connect_refused(addr)
