"""Connection caps: over --max-connections a new connection is closed at once and counted;
over --max-connections-per-binding a handshake to that binding fails while the others work."""

import socket
import ssl
import time

import pytest

from conftest import (SLOW, cpu_seconds, figure, free_port, peer_der, sink_handler,
                      tls_connect)


def is_open(s, wait=0.3):
    """True when the server has neither closed nor reset s within `wait` seconds."""
    s.settimeout(wait)
    try:
        return s.recv(1) != b""
    except (socket.timeout, TimeoutError):
        return True
    except (ConnectionResetError, ssl.SSLError):
        return False


def test_global_cap_closes_the_next_connection_at_once(store, serve):
    port = free_port()
    c = store.cert("a.test")
    store.bind("ipport=127.0.0.1:%d" % port, c)
    srv = serve("--max-connections", 5, "--workers", 1, "--handshake-timeout", 60, workers=1)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW) for _ in range(5)]
    try:
        # The 5 are accepted (a TLS byte exchange would need the handshake; wait for the
        # accept to show in /proc instead: the worker then holds 5 client sockets).
        time.sleep(0.5 * SLOW)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
        extra.settimeout(5 * SLOW)
        try:
            t0 = time.monotonic()
            try:
                got = extra.recv(1)
            except ConnectionResetError:
                got = b""
            closed_after = time.monotonic() - t0
            assert got == b"", "the 6th connection got data instead of a close"
            assert closed_after < 5 * SLOW
        finally:
            extra.close()
        assert all(is_open(s) for s in held), "a connection under the cap was closed"
        cap = srv.wait_event("connection_cap")
        assert cap[0]["cap"] == "5" and int(cap[0]["refused_total"]) >= 1, cap
        # Under the cap again (one closes), a new connection is served.
        held.pop().close()
        time.sleep(0.5 * SLOW)
        with tls_connect("127.0.0.1", port) as s:
            assert peer_der(s) == c.der
    finally:
        for s in held:
            s.close()


def per_binding_setup(store, serve, backends):
    port_a, port_b = free_port(), free_port()
    a = store.cert("a.test")
    b = store.cert("b.test")
    be = backends(sink_handler)  # a connection ends as soon as its client goes
    store.bind("ipport=127.0.0.1:%d" % port_a, a, "backend=%s" % be.addr)
    store.bind("ipport=127.0.0.1:%d" % port_b, b, "backend=%s" % be.addr)
    srv = serve("--max-connections-per-binding", 2, "--workers", 1, workers=1)
    return srv, port_a, port_b, a, b


def assert_third_refused(srv, port_a, port_b, a, b, held):
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as e:
        tls_connect("127.0.0.1", port_a).close()
    assert "HANDSHAKE_FAILURE" in str(e.value).upper() or isinstance(
        e.value, ConnectionResetError), e.value
    # Another binding still works, and the two held connections are untouched.
    with tls_connect("127.0.0.1", port_b) as s:
        assert peer_der(s) == b.der
    assert all(is_open(s) for s in held)
    srv.wait_event("connection_cap", pred=lambda e: e.get("binding") ==
                   "ipport=127.0.0.1:%d" % port_a)


def connect_when_free(port, cert, keep=False):
    """A handshake that succeeds once the server has seen a closed connection go (bounded
    retries: the close reaches the server asynchronously)."""
    deadline = time.monotonic() + 10 * SLOW
    while True:
        try:
            s = tls_connect("127.0.0.1", port)
            break
        except (ssl.SSLError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert peer_der(s) == cert.der
    if keep:
        return s
    s.close()


def test_per_binding_cap_refuses_the_third_handshake(store, serve, backends):
    srv, port_a, port_b, a, b = per_binding_setup(store, serve, backends)
    held = [tls_connect("127.0.0.1", port_a) for _ in range(2)]
    try:
        assert all(peer_der(s) == a.der for s in held)
        assert_third_refused(srv, port_a, port_b, a, b, held)
        # Once one of the two closes, the binding takes a new connection again.
        held.pop().close()
        connect_when_free(port_a, a)
    finally:
        for s in held:
            s.close()


def test_per_binding_cap_holds_across_a_store_change(store, serve, backends):
    """Open connections still count after serve swaps in a new snapshot (any store change)."""
    srv, port_a, port_b, a, b = per_binding_setup(store, serve, backends)
    held = [tls_connect("127.0.0.1", port_a) for _ in range(2)]
    try:
        gen = srv.generation()
        c = store.cert("c.test")
        store.bind("ipport=127.0.0.1:%d" % free_port(), c)
        srv.wait_event("snapshot", pred=lambda e: int(e["generation"]) > gen)
        assert_third_refused(srv, port_a, port_b, a, b, held)
        # Closing them after the swap frees their places in the new snapshot.
        held.pop().close()
        connect_when_free(port_a, a)
        held.pop().close()
        more = [connect_when_free(port_a, a, keep=True) for _ in range(2)]
        for s in more:
            s.close()
    finally:
        for s in held:
            s.close()


def test_descriptor_exhaustion_pauses_accepting_without_spinning(store, serve):
    """Out of file descriptors, the worker stops accepting for a moment (logged) instead of
    spinning on EMFILE, and serves again once descriptors are free."""
    port = free_port()
    c = store.cert("a.test")
    store.bind("ipport=127.0.0.1:%d" % port, c)
    srv = serve("--handshake-timeout", 60, workers=1, nofile=64)
    worker = srv.workers()[0]
    flood = []
    try:
        for _ in range(120):  # more than the worker can hold; the rest wait in the backlog
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW))
        srv.wait_event("accept_paused")
        lines0 = len(srv.events("accept_paused"))
        cpu0, t0 = cpu_seconds(worker), time.monotonic()
        time.sleep(3.0)
        used = cpu_seconds(worker) - cpu0
        wall = time.monotonic() - t0
        paused = srv.events("accept_paused")
        figure("EMFILE: worker CPU while out of descriptors", "%.2f s in %.1f s" % (used, wall))
        figure("EMFILE: accept_paused lines / pauses in that time", "%d / %s" % (
            len(paused) - lines0, paused[-1].get("pauses")))
        assert used < 0.5 * wall, "the worker spins while out of descriptors: %.2f s CPU in " \
            "%.1f s" % (used, wall)
        # It keeps retrying (a pause is 100 ms), but says so at most about once a second.
        assert len(paused) - lines0 <= wall + 2, "%d accept_paused lines in %.1f s" % (
            len(paused) - lines0, wall)
        assert int(paused[-1]["pauses"]) > len(paused), paused[-1]
        assert srv.events("worker_died") == []
    finally:
        for s in flood:
            s.close()
    # Descriptors are free again: a client is served (the worker resumed accepting).
    deadline = time.monotonic() + 20 * SLOW
    while True:
        try:
            with tls_connect("127.0.0.1", port, timeout=5 * SLOW) as s:
                assert peer_der(s) == c.der
            break
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert srv.workers() == [worker]
