"""Session tickets under the store's shared keys (design sections 8 and 9): a session resumes
on any worker and after a restart, across one rotation of the keys and not across three; a
binding without enablesessionticket issues none; `--ticket-rotate` refuses bad values. The
rotations are followed through the log (`ticket_keys_rotated` from the manager,
`ticket_keys_loaded` from each worker), never through sleeps."""

import json
import re
import sqlite3
import ssl
import urllib.request

import pytest

import cbe2e
from cbe2e import ERR, SLOW, TLSConn, client_ctx, free_port

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = [pytest.param(TLS13, id="tls13"), pytest.param(TLS12, id="tls12")]
SANITIZED = cbe2e.binary_sanitized()
# Waits are guards against a hang, never timing assertions.
WAIT = 30 * SLOW * (3 if SANITIZED else 1)
# The short period of the rotation tests: 0.002 h = 7.2 s (kept as 7 s). A resumption must
# happen between rotations n+1 and n+3, so at least 14 s: ample on a loaded 2-core machine.
SHORT_HOURS = "0.002"


@pytest.fixture
def site(st, pki, backends):
    """Two bindings on one port: tickets.test with session tickets, plain.test without."""
    c = pki.get("tickets", "tickets.test", ["tickets.test", "plain.test"])
    st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    port = free_port()
    st.add("hostnameport=tickets.test:%d" % port, c, backend=echo.addr,
           enablesessionticket="enable")
    st.add("hostnameport=plain.test:%d" % port, c, backend=echo.addr)
    return {"st": st, "port": port, "cert": c}


def new_session(port, version, sni="tickets.test"):
    """A full handshake; returns the session (with its ticket) after one echo (TLS 1.3 sends
    its tickets after the handshake)."""
    ctx = client_ctx(minv=version, maxv=version)
    with TLSConn("127.0.0.1", port, sni, ctx) as c:
        assert c.echo(b"ping") == b"ping"
        assert not c.obj.session_reused
        return ctx, c.obj.session


def resume(port, ctx, session, sni="tickets.test"):
    """Offers session; returns whether the server resumed it (the connection works either way)."""
    with TLSConn("127.0.0.1", port, sni, ctx, session=session) as c:
        assert c.echo(b"pong") == b"pong"
        return c.obj.session_reused


def status(admin):
    with urllib.request.urlopen("http://%s/status.json" % admin, timeout=10) as r:
        return json.loads(r.read())


def metrics(admin):
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=10) as r:
        return r.read().decode()


def loaded_everywhere(srv, workers, generation, after=0):
    """Waits until every worker logged that it serves ticket keys of `generation` or newer."""
    for w in range(workers):
        srv.wait_log(r"event=ticket_keys_loaded worker=%d keys=\d+ generation=(%s)\b"
                     % (w, "|".join(str(g) for g in range(generation, generation + 50))),
                     WAIT, after)


def current_generation(srv):
    """The newest generation the manager logged."""
    gens = [int(m) for m in re.findall(r"event=ticket_keys_rotated keys=\d+ generation=(\d+)",
                                       srv.log())]
    assert gens, srv.log()
    return max(gens)


def stored_keys(st):
    conn = sqlite3.connect(str(st.state / "certbind.db"), timeout=10)
    try:
        return conn.execute("SELECT id, key, created FROM ticket_keys ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_resumes_on_every_worker(site, version):
    """Two workers, no certificate affinity (the kernel spreads connections over both): a
    ticket made by one resumes on both, every time; the per-worker counters show each worker
    resumed some."""
    st, port = site["st"], site["port"]
    admin = "127.0.0.1:%d" % free_port()
    srv = st.serve(workers=2, admin=admin, extra_args=["--no-affinity"]).start()
    loaded_everywhere(srv, 2, 1)
    ctx, session = new_session(port, version)
    tries = 0
    while True:
        tries += 1
        assert resume(port, ctx, session), "try %d did not resume" % tries
        per_worker = [w["resumed"] for w in status(admin)["workers"]]
        if len(per_worker) == 2 and all(n > 0 for n in per_worker):
            break
        assert tries < 300, "300 resumptions never reached both workers: %s" % per_worker
    text = metrics(admin)
    assert re.search(r"^certbind_resumed_handshakes_total %d$" % tries, text, re.M), text
    assert re.search(r"^certbind_ticket_key_rotations_total 1$", text, re.M), text
    assert re.search(r"^certbind_ticket_key_age_seconds \d+$", text, re.M), text
    srv.stop()


@pytest.mark.parametrize("version", VERSIONS)
def test_resumes_across_one_rotation_not_three(site, version):
    """With a short period: a ticket made under key n resumes once n+1 is current (and the
    client is given a fresh ticket), and no longer once n+3 is (n is gone)."""
    st, port = site["st"], site["port"]
    srv = st.serve(workers=2, extra_args=["--ticket-rotate", SHORT_HOURS]).start()
    # Start right after a rotation, so that a whole period lies ahead.
    off = len(srv.log())
    srv.wait_log(r"event=ticket_keys_rotated keys=\d+ generation=\d+", WAIT, off)
    n = current_generation(srv)
    loaded_everywhere(srv, 2, n)
    ctx, session = new_session(port, version)
    loaded_everywhere(srv, 2, n + 1, off)
    assert current_generation(srv) < n + 3
    for _ in range(4):  # on whichever worker answers
        assert resume(port, ctx, session)
    loaded_everywhere(srv, 2, n + 3, off)
    assert not resume(port, ctx, session)
    # The store holds three keys, none of them the ticket's.
    rows = stored_keys(st)
    assert len(rows) == 3, rows
    assert min(r[0] for r in rows) > n, rows
    # The log never holds key bytes.
    log = srv.log()
    for _, key, _ in rows:
        assert key.hex() not in log.lower()
        assert key[16:].hex() not in log.lower()
    srv.stop()


def test_restart_keeps_the_keys(site):
    """A ticket from before a restart of serve resumes after it: the keys are in the store."""
    st, port = site["st"], site["port"]
    srv = st.serve(workers=2).start()
    ctx, session = new_session(port, TLS13)
    assert resume(port, ctx, session)
    srv.stop()
    srv2 = st.serve(workers=2).start()
    assert "event=ticket_keys_rotated" not in srv2.log()  # the key is not due: kept
    assert resume(port, ctx, session)
    srv2.stop()
    assert len(stored_keys(st)) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_binding_without_option_issues_no_ticket(site, version):
    """plain.test (no enablesessionticket) on the same port, certificate and worker as
    tickets.test: the client gets no ticket, so nothing resumes; tickets.test gets one."""
    port = site["port"]
    srv = site["st"].serve(workers=1).start()
    for _ in range(3):
        ctx, session = new_session(port, version, sni="plain.test")
        assert not session.has_ticket
        assert not resume(port, ctx, session, sni="plain.test")
        ctx, session = new_session(port, version)
        assert session.has_ticket
    srv.stop()


BAD_PERIODS = ["0", "-1", "abc", "nan", "inf", "1e9", "8761", "0.0001", "0.0002", "12h", ""]


@pytest.mark.parametrize("value", BAD_PERIODS)
def test_ticket_rotate_refuses_bad_values(st, value):
    """Exit 2, one line that names the flag and what to give; the store is not touched."""
    before = stored_keys(st) if (st.state / "certbind.db").exists() else None
    rc, out, err = st.run("serve", "--ticket-rotate", value, check=False)
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERR + "--ticket-rotate"), err
    if value:
        assert "hours" in err
    after = stored_keys(st) if (st.state / "certbind.db").exists() else None
    assert before == after
