"""Timeouts, signals, listening and privileges of `certbind serve`."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest
from pathlib import Path

import cbe2e
from cbe2e import (ERR, IS_ROOT, SLOW, STARTUP, TLSConn, connect_refused, free_port, poll_until,
                   served_thumb)


@pytest.fixture
def one(st, pki, backends):
    """One SNI binding with an echo backend, and a helper to start serve with given flags."""
    c = pki.get("life.test")
    st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    st.add("hostnameport=life.test:%d" % P, c, backend=echo.addr)
    return {"st": st, "P": P, "cert": c}


# ---- timeouts -----------------------------------------------------------------------


def test_handshake_timeout_closes_silent_client_and_serves_others(one):
    srv = one["st"].serve(workers=1, handshake_timeout=1).start()
    silent = socket.create_connection(("127.0.0.1", one["P"]))
    silent.settimeout(10 * SLOW)
    try:
        # Meanwhile, others are served (one worker: the silent client must not block it).
        with TLSConn("127.0.0.1", one["P"], "life.test") as c:
            assert c.echo(b"served") == b"served"
        t0 = time.monotonic()
        try:
            assert silent.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 8 * SLOW
    finally:
        silent.close()
    line = srv.wait_log(r"event=handshake_timeout[^\n]*", 5)
    assert "binding=-" in line, line
    srv.stop()


def test_handshake_timeout_after_partial_client_hello(one):
    """A client that starts a ClientHello and stalls is closed too."""
    srv = one["st"].serve(workers=1, handshake_timeout=1).start()
    s = socket.create_connection(("127.0.0.1", one["P"]))
    s.settimeout(10 * SLOW)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a record header and a start
    try:
        assert s.recv(1) == b""
    except ConnectionResetError:
        pass
    s.close()
    srv.wait_log(r"event=handshake_timeout", 5)
    srv.stop()


def test_idle_timeout_closes_idle_relay_not_active_one(one):
    srv = one["st"].serve(workers=1, idle_timeout=1).start()
    idle = TLSConn("127.0.0.1", one["P"], "life.test")
    active = TLSConn("127.0.0.1", one["P"], "life.test")
    assert idle.echo(b"hi") == b"hi"
    # Keep one connection busy for longer than the idle timeout.
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        assert active.echo(b"tick") == b"tick"
        time.sleep(0.2)
    assert idle.closed_by_server(5 * SLOW), "idle connection not closed"
    line = srv.wait_log(r"event=idle_timeout[^\n]*", 5)
    assert "binding=hostnameport=life.test:%d" % one["P"] in line, line
    idle.close()
    active.close()
    srv.stop()


# ---- signals --------------------------------------------------------------------------


def test_sigterm_drains_open_connection_then_exits_0(one):
    P = one["P"]
    srv = one["st"].serve(workers=2, grace=30).start()
    conn = TLSConn("127.0.0.1", P, "life.test")
    assert conn.echo(b"before") == b"before"
    srv.signal(signal.SIGTERM)
    srv.wait_log(r"event=draining", 10 * SLOW)
    # The listener closes: new connections are refused (on every address).
    assert poll_until(lambda: connect_refused("127.0.0.1", P) and connect_refused("::1", P), 3 * SLOW), srv.log()
    # The open connection may finish its work.
    assert conn.echo(b"during drain") == b"during drain"
    assert srv.proc.poll() is None, "serve exited with a connection still open"
    conn.close_notify()
    assert conn.recv_all() == b""
    conn.close()
    rc = srv.wait(15 * SLOW)  # far less than the 30 s grace
    srv.assert_clean_exit(rc)
    assert "drain_timeout" not in srv.log()
    srv.wait_log(r"event=drained", 1)


def test_sigterm_grace_closes_lingering_connection(one):
    srv = one["st"].serve(workers=1, grace=1).start()
    conn = TLSConn("127.0.0.1", one["P"], "life.test")
    assert conn.echo(b"x") == b"x"
    srv.signal(signal.SIGTERM)
    rc = srv.wait(15 * SLOW)
    srv.assert_clean_exit(rc)
    assert conn.closed_by_server(5)
    conn.close()
    srv.wait_log(r"event=drain_timeout", 1)


def test_sigterm_idle_exits_0(one):
    srv = one["st"].serve(workers=2).start()
    srv.stop()
    log = srv.log()
    assert log.count("event=drained") == 2, log  # both workers


def test_sighup_logs_snapshot_again(one):
    srv = one["st"].serve(workers=2).start()
    n = len(srv.lines("snapshot"))
    assert n >= 1
    srv.signal(signal.SIGHUP)
    assert poll_until(lambda: len(srv.lines("snapshot")) > n, 5 * SLOW), srv.log()
    assert srv.lines("reload"), srv.log()
    # Still serving, with every certificate reloaded.
    assert served_thumb("127.0.0.1", one["P"], "life.test") == one["cert"].thumb
    srv.stop()


def test_sighup_picks_up_a_fixed_key(st, pki):
    """A broken key fixed on disk (no store change) is picked up by SIGHUP."""
    c = cbe2e.make_cert(st.dir, "fixme", "fix.test", ["fix.test"])
    st.add_cert(c)
    P = free_port()
    st.add("hostnameport=fix.test:%d" % P, c)
    key = st.key_file(c.thumb)
    saved = key.read_bytes()
    stat = key.stat()
    key.unlink()
    srv = st.serve(workers=1).start()
    e = cbe2e.handshake_error("127.0.0.1", P, "fix.test")
    assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR"
    key.write_bytes(saved)
    os.chown(key, stat.st_uid, stat.st_gid)
    os.chmod(key, 0o600)
    srv.signal(signal.SIGHUP)
    assert poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "fix.test") == c.thumb, 5 * SLOW), srv.log()
    srv.stop()


# ---- listening --------------------------------------------------------------------------


def _serve_fails(st, needle):
    srv = st.serve(workers=1).start(wait_ready=False)
    rc = srv.wait(STARTUP)
    log = srv.log()
    assert rc != 0, log
    errs = [l for l in log.splitlines() if l.startswith(ERR)]
    assert len(errs) == 1 and needle in errs[0], log
    assert "event=ready" not in log
    return errs[0]


def test_ip_port_in_use_is_an_error_naming_the_address(st, pki):
    c = pki.get("life.test")
    st.add_cert(c)
    occupant = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    occupant.bind(("127.0.0.2", 0))
    occupant.listen(1)
    P = occupant.getsockname()[1]
    try:
        st.add("ipport=127.0.0.2:%d" % P, c)
        err = _serve_fails(st, "127.0.0.2:%d" % P)
        assert "in use" in err, err
    finally:
        occupant.close()


def test_wildcard_port_in_use_is_an_error_naming_the_address(st, pki):
    c = pki.get("life.test")
    st.add_cert(c)
    occupant = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    occupant.bind(("127.0.0.1", 0))
    occupant.listen(1)
    P = occupant.getsockname()[1]
    try:
        st.add("hostnameport=life.test:%d" % P, c)
        err = _serve_fails(st, ":%d" % P)
        assert "in use" in err, err
    finally:
        occupant.close()


def test_ip_only_port_listens_only_on_its_address(st, pki):
    c = pki.get("life.test")
    st.add_cert(c)
    P = free_port()
    st.add("ipport=127.0.0.2:%d" % P, c)
    srv = st.serve(workers=2).start()
    assert served_thumb("127.0.0.2", P) == c.thumb
    for host in ("127.0.0.1", "127.0.0.3", "::1"):
        assert connect_refused(host, P), host
    listens = srv.lines("listen")
    assert len(listens) == 1 and "addr=127.0.0.2:%d" % P in listens[0], srv.log()
    srv.stop()


def test_ipv6_ip_binding_listens_only_on_its_address(st, pki):
    c = pki.get("life.test")
    st.add_cert(c)
    P = free_port()
    st.add("ipport=[::1]:%d" % P, c)
    srv = st.serve(workers=1).start()
    assert served_thumb("::1", P) == c.thumb
    assert connect_refused("127.0.0.1", P)
    srv.stop()


# ---- privileges -------------------------------------------------------------------------


def _status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


@pytest.mark.skipif(not IS_ROOT, reason="privilege drop is tested as root")
def test_workers_run_as_service_user(one, service_user):
    srv = one["st"].serve(workers=2).start()
    kids = srv.children()
    names = sorted(Path("/proc/%d/comm" % pid).read_text().strip() for pid in kids)
    assert names == ["cb-manager", "cb-worker-0", "cb-worker-1"], names
    for pid in kids:
        s = _status(pid)
        assert s["Uid"] == [str(service_user.pw_uid)] * 4, s["Uid"]
        assert s["Gid"] == [str(service_user.pw_gid)] * 4, s["Gid"]
        # At most CAP_NET_BIND_SERVICE (bit 10) remains.
        assert int(s["CapEff"][0], 16) & ~(1 << 10) == 0, s["CapEff"]
    # The master dropped too.
    assert _status(srv.pid)["Uid"][0] == str(service_user.pw_uid)
    assert served_thumb("127.0.0.1", one["P"], "life.test") == one["cert"].thumb
    srv.stop()


@pytest.mark.skipif(not IS_ROOT, reason="the root refusal only applies to root")
def test_root_without_service_user_is_refused(workdir, pki):
    import tempfile

    folder = tempfile.mkdtemp(dir=workdir)
    os.chmod(folder, 0o755)
    st = cbe2e.State(folder)
    c = pki.get("life.test")
    st.add_cert(c)
    st.add("hostnameport=life.test:%d" % free_port(), c)
    try:
        err = _serve_fails(st, "set user=")
    finally:
        st.cleanup()
    assert "root" in err, err
