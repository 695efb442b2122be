"""HTTP clients speak first: with h2 or http/1.1 negotiated, the backend is connected when
the first bytes arrive, so connections that never ask anything (browser pre-connects, a
handshake-only load) cost the backend nothing. Without ALPN the protocol may be one where
the server speaks first, and the backend is connected at the end of the handshake."""

import signal
import time

import pytest

import cbe2e
from cbe2e import SLOW, TLSConn, client_ctx, free_port, poll_until


@pytest.fixture(scope="module")
def site(mod_state, pki, mod_backends):
    st = mod_state
    c = pki.get("first.test", "first.test", ["first.test", "*.first.test"])
    st.add_cert(c)
    echo = mod_backends(cbe2e.echo_handler)
    proxied = mod_backends(cbe2e.proxy_handler)
    greeter = mod_backends(greeting_handler)
    P = free_port()
    st.add("hostnameport=echo.first.test:%d" % P, c, backend=echo.addr)
    st.add("hostnameport=proxy.first.test:%d" % P, c, backend=proxied.addr, proxyprotocol="v2")
    st.add("hostnameport=greet.first.test:%d" % P, c, backend=greeter.addr)
    srv = st.serve(workers=1).start()
    yield {"P": P, "srv": srv, "echo": echo, "proxied": proxied, "greeter": greeter, "cert": c}
    srv.stop()


def greeting_handler(conn, be):
    """A server-speaks-first protocol: a banner before anything is read, then echo."""
    conn.sendall(b"220 hello\r\n")
    cbe2e.echo_handler(conn, be)


def test_http_client_that_never_asks_costs_no_backend_connection(site):
    before = site["echo"].accepted
    for alpn in (["http/1.1"], ["h2"], ["h2", "http/1.1"]):
        with TLSConn("127.0.0.1", site["P"], "echo.first.test", ctx=client_ctx(alpn=alpn)) as c:
            assert c.peer_thumb == site["cert"].thumb
            assert c.obj.selected_alpn_protocol() in ("h2", "http/1.1")
    time.sleep(0.3 * SLOW)
    assert site["echo"].accepted == before, "a backend connection was made for no request"


def test_first_bytes_connect_the_backend_and_arrive_whole(site):
    before = site["echo"].accepted
    with TLSConn("127.0.0.1", site["P"], "echo.first.test", ctx=client_ctx(alpn=["http/1.1"])) as c:
        time.sleep(0.2 * SLOW)
        assert site["echo"].accepted == before
        msg = b"GET / HTTP/1.1\r\nHost: echo.first.test\r\n\r\n"
        assert c.echo(msg) == msg
        big = bytes(range(256)) * 400
        assert c.echo(big) == big
    assert site["echo"].accepted == before + 1


def test_proxy_header_comes_before_the_first_bytes(site):
    with TLSConn("127.0.0.1", site["P"], "proxy.first.test", ctx=client_ctx(alpn=["h2"])) as c:
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        assert c.echo(preface) == preface
    hdr = site["proxied"].wait_records(1, 10)[-1]
    tlvs = dict(hdr["tlvs"])
    assert tlvs[0x01] == b"h2", hdr  # ALPN
    assert tlvs[0x02] == b"proxy.first.test", hdr  # authority = SNI


def test_without_alpn_the_backend_is_connected_at_once(site):
    """A server-speaks-first backend: its banner reaches a client that sends nothing."""
    with TLSConn("127.0.0.1", site["P"], "greet.first.test") as c:
        assert c.recv_exact(len(b"220 hello\r\n")) == b"220 hello\r\n"
        assert c.echo(b"ehlo\r\n") == b"ehlo\r\n"


def test_waiting_connections_close_at_once_on_sigterm(st, pki, backends):
    """A drain closes connections that asked nothing; a request in flight keeps its grace."""
    c = pki.get("drain-first.test", "drain-first.test", ["drain-first.test"])
    st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    st.add("hostnameport=drain-first.test:%d" % P, c, backend=echo.addr)
    srv = st.serve(workers=1, grace=30).start()
    idle = TLSConn("127.0.0.1", P, "drain-first.test", ctx=client_ctx(alpn=["http/1.1"]))
    busy = TLSConn("127.0.0.1", P, "drain-first.test", ctx=client_ctx(alpn=["http/1.1"]))
    try:
        assert busy.echo(b"GET / HTTP/1.1\r\n\r\n") == b"GET / HTTP/1.1\r\n\r\n"
        srv.signal(signal.SIGTERM)
        srv.wait_log(r"event=draining\b", 10 * SLOW)
        # The idle one is closed by the server (close_notify, then EOF) ...
        assert poll_until(lambda: idle.recv_all() is not None and idle.eof, 10 * SLOW), idle.eof
        # ... the busy one still works until it closes itself.
        assert busy.echo(b"more") == b"more"
        assert srv.proc.poll() is None
    finally:
        busy.close()
        idle.close()
    srv.assert_clean_exit(srv.wait(30 * SLOW))
