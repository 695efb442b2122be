"""kill -9 of the manager while it rotates the session ticket keys: no key lost, none
duplicated (never two keys in one period, ids without a gap), the replacement rotates on,
workers follow, and a session still resumes."""

import re
import sqlite3
import ssl
import time

import pytest

import cbe2e
import faultlib as fl

PERIOD_HOURS = "0.0003"  # 1.08 h/1000: kept as 1 s, the shortest period serve takes
PERIOD_S = 1
WAIT = 30 * fl.SLOW


@pytest.fixture
def tickets_site(st, pki, backends):
    c = pki.get("fault-tickets", "tickets.test", ["tickets.test"])
    st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    port = cbe2e.free_port()
    st.add("hostnameport=tickets.test:%d" % port, c, backend=echo.addr,
           enablesessionticket="enable")
    return port


def keys(st):
    conn = fl.db(st)
    try:
        return conn.execute("SELECT id, created, length(key) FROM ticket_keys ORDER BY id").fetchall()
    finally:
        conn.close()


def check_keys(rows):
    """The invariants of the table: at most three keys, ids consecutive, every one 80 bytes,
    and no two made in one period."""
    problems = []
    if not 1 <= len(rows) <= 3:
        problems.append("%d keys stored" % len(rows))
    ids = [r[0] for r in rows]
    if ids != list(range(ids[0], ids[0] + len(ids))) if ids else False:
        problems.append("ids with a gap: %s" % ids)
    if any(r[2] != 80 for r in rows):
        problems.append("a key that is not 80 bytes: %s" % rows)
    for a, b in zip(rows, rows[1:]):
        if b[1] - a[1] < PERIOD_S:
            problems.append("two keys within one period: %s" % rows)
    return problems


def rotations(srv, after=0):
    return [int(g) for g in re.findall(r"event=ticket_keys_rotated keys=\d+ generation=(\d+)",
                                       srv.log()[after:])]


def wait_rotation_past(srv, generation, after=0):
    """Waits for a ticket_keys_rotated line of a generation above `generation`."""
    fl.poll_until(lambda: any(g > generation for g in rotations(srv, after)), WAIT)
    new = [g for g in rotations(srv, after) if g > generation]
    assert new, "no rotation past generation %d; log:\n%s" % (generation, srv.log()[-4000:])
    return max(new)


def session_resumes(port):
    ctx = cbe2e.client_ctx(minv=ssl.TLSVersion.TLSv1_3, maxv=ssl.TLSVersion.TLSv1_3)
    with cbe2e.TLSConn("127.0.0.1", port, "tickets.test", ctx) as c:
        assert c.echo(b"a") == b"a"
        session = c.obj.session
    with cbe2e.TLSConn("127.0.0.1", port, "tickets.test", ctx, session=session) as c:
        assert c.echo(b"b") == b"b"
        return c.obj.session_reused


def test_manager_killed_while_waiting_to_write(st, tickets_site):
    """A rotation is due while another process holds the store's write lock: the manager
    waits inside its rotation (it logs ticket_keys_rotate_failed each time the wait ends) and
    is killed there. Once the lock is released the new manager adds exactly one key."""
    srv = fl.serve(st, workers=1, extra_args=["--ticket-rotate", PERIOD_HOURS])
    wait_rotation_past(srv, 0)
    lock = sqlite3.connect(str(st.state / "certbind.db"), timeout=10, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        held = rotations(srv)
        off = len(srv.log())
        srv.wait_log(r"event=ticket_keys_rotate_failed\b.*busy", WAIT, off)
        # It tries again at once (one tick later): kill it inside that wait.
        pid = srv.procs()["manager"]
        assert pid is not None
        assert srv.signal_child(pid)
        new = fl.replaced(srv, "manager", pid)
        assert new is not None, "the manager was not replaced; log:\n" + srv.log()
        before_release = keys(st)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # Nothing was written while the lock was held.
    assert max(r[0] for r in before_release) == max(held), (before_release, held)
    wait_rotation_past(srv, max(held))
    g1 = min(g for g in rotations(srv) if g > max(held))
    assert g1 == max(held) + 1, (g1, held)  # the killed manager's key never landed
    rows = keys(st)
    problems = check_keys(rows)
    logged = rotations(srv)
    if len(logged) != len(set(logged)):
        problems.append("a generation logged twice: %s" % logged)
    srv.wait_log(r"event=ticket_keys_loaded worker=0 keys=\d+ generation=\d+", WAIT)
    if not session_resumes(tickets_site):
        problems.append("a fresh session did not resume after the kill")
    fl.check_clean_stop(srv, problems, expect_died={"manager_died": 1})
    fl.verdict(srv, problems)


def test_manager_killed_at_random_moments(st, tickets_site, request):
    """Five kill -9s of the manager at random moments of a 1 s rotation: the table keeps its
    invariants after each, every rotation logged is one key, and rotation goes on."""
    r = fl.rng(request.node.name)
    srv = fl.serve(st, workers=1, extra_args=["--ticket-rotate", PERIOD_HOURS])
    g = wait_rotation_past(srv, 0)
    problems = []
    kills = 0
    for i in range(5):
        time.sleep(r.uniform(0.0, 1.2 * PERIOD_S))  # a random moment of the period
        pid = srv.procs()["manager"]
        if pid is None or not srv.signal_child(pid):
            problems.append("kill %d: no manager to kill" % i)
            continue
        kills += 1
        if fl.replaced(srv, "manager", pid) is None:
            problems.append("kill %d: the manager was not replaced" % i)
            break
        problems += ["after kill %d: %s" % (i, p) for p in check_keys(keys(st))]
        g = wait_rotation_past(srv, g)
    rows = keys(st)
    problems += check_keys(rows)
    logged = rotations(srv)
    # Each logged rotation is one key (a kill between commit and log loses a line, never
    # adds a key); no generation is logged twice.
    if len(logged) != len(set(logged)):
        problems.append("a generation logged twice: %s" % logged)
    if max(logged) != rows[-1][0]:
        problems.append("newest logged %d, newest stored %d" % (max(logged), rows[-1][0]))
    srv.wait_log(r"event=ticket_keys_loaded worker=0 keys=\d+ generation=(%s)\b"
                 % "|".join(str(x) for x in range(rows[-1][0], rows[-1][0] + 20)), WAIT)
    if not session_resumes(tickets_site):
        problems.append("a fresh session did not resume after the kills")
    fl.check_clean_stop(srv, problems, expect_died={"manager_died": kills})
    fl.verdict(srv, problems)
