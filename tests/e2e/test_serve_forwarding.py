"""Forwarding: plaintext to the binding's backend and back, byte-exact, with half-close,
back-pressure, a refusing backend, and the 503 of a binding without one."""

import hashlib
import os
import re
import subprocess
import time

import pytest

import cbe2e
from cbe2e import SLOW, TLSConn, dead_port, free_port, poll_until


# The longest name there is: 253 characters, labels of 63.
LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 52]) + ".fwd.test"


@pytest.fixture(scope="module")
def fwd(mod_state, pki, mod_backends):
    st = mod_state
    c = pki.get("fwd.test", "fwd.test", ["fwd.test", "*.fwd.test"])
    st.add_cert(c)
    echo = mod_backends(cbe2e.echo_handler)
    reply = mod_backends(cbe2e.reply_after_eof_handler)
    http = mod_backends(cbe2e.http_handler)
    P = free_port()
    st.add("hostnameport=echo.fwd.test:%d" % P, c, backend=echo.addr)
    st.add("hostnameport=reply.fwd.test:%d" % P, c, backend=reply.addr)
    st.add("hostnameport=http.fwd.test:%d" % P, c, backend=http.addr)
    st.add("hostnameport=refused.fwd.test:%d" % P, c, backend="127.0.0.1:%d" % dead_port())
    st.add("hostnameport=none.fwd.test:%d" % P, c)
    st.add("hostnameport=proxyv1none.fwd.test:%d" % P, c, proxyprotocol="v1")
    st.add("hostnameport=proxyv2none.fwd.test:%d" % P, c, proxyprotocol="v2")
    st.add("hostnameport=%s:%d" % (LONGEST_NAME, P), c)
    srv = st.serve(workers=2).start()
    yield {"P": P, "srv": srv, "echo": echo, "reply": reply, "http": http, "cert": c}
    srv.stop()


def test_bytes_both_ways_through_echo_backend(fwd):
    with TLSConn("127.0.0.1", fwd["P"], "echo.fwd.test") as c:
        assert c.peer_thumb == fwd["cert"].thumb
        for msg in (b"hello", b"\x00\xff" * 1000, os.urandom(70000)):
            assert c.echo(msg) == msg


def test_ipv6_client_through_backend(fwd):
    with TLSConn("::1", fwd["P"], "echo.fwd.test") as c:
        assert c.echo(b"over ipv6") == b"over ipv6"


def test_20_mb_echo_intact_both_directions(fwd):
    payload = os.urandom(20 * 1024 * 1024)
    with TLSConn("127.0.0.1", fwd["P"], "echo.fwd.test") as c:
        got = c.transfer(payload, len(payload), timeout=120 * SLOW)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


@pytest.mark.parametrize("how", ["close_notify", "tcp_fin"])
def test_half_close_client_still_receives_reply(fwd, how):
    """The client ends its sending side; the backend sees EOF, then answers; the answer arrives."""
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with TLSConn("127.0.0.1", fwd["P"], "reply.fwd.test") as c:
        c.send(payload)
        if how == "close_notify":
            c.close_notify()
        else:
            c.shut_tcp()
        reply = c.recv_all()
        assert c.eof == "close_notify", "the reply must end with close_notify, got %s" % c.eof
    assert reply == b"got %d bytes sha256=%s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())


@pytest.mark.parametrize("records", range(1, 12))
def test_end_of_input_arriving_with_a_burst_is_passed_on(fwd, records):
    """Records and close_notify in one burst: the end must reach the backend whichever pump
    round reads it (the last round used to drop it, so the backend never saw EOF)."""
    payload = os.urandom(records * 16384)
    with TLSConn("127.0.0.1", fwd["P"], "reply.fwd.test", timeout=10) as c:
        c.send_and_close_notify(payload)
        reply = c.recv_all()
    assert reply == b"got %d bytes sha256=%s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())


def test_backend_refused_closes_client_and_logs(fwd):
    srv, P = fwd["srv"], fwd["P"]
    mark = len(srv.log())
    with TLSConn("127.0.0.1", P, "refused.fwd.test") as c:
        assert c.peer_thumb == fwd["cert"].thumb  # the handshake itself works
        assert c.closed_by_server(10 * SLOW), "client connection left open"
    line = srv.wait_log(r"event=backend_error [^\n]*binding=hostnameport=refused.fwd.test:%d " % P, 5, mark)
    assert re.search(r"refused", line, re.I), line


def test_binding_without_backend_closes_quietly_when_client_leaves_without_asking(fwd):
    """A client that ends (close_notify) before any request gets no answer and no
    close_notify back: the connection is closed at once, not held until the idle timeout."""
    with TLSConn("127.0.0.1", fwd["P"], "none.fwd.test") as c:
        c.close_notify()
        c.sock.settimeout(5 * SLOW)
        raw = b""
        while True:  # the socket itself: any record (an alert included) would show here
            d = c.sock.recv(65536)
            if not d:
                break
            raw += d
        assert raw == b"", "the server sent %d bytes after the client's close_notify" % len(raw)


def test_binding_without_backend_answers_503_naming_it(fwd):
    P = fwd["P"]
    key = "hostnameport=none.fwd.test:%d" % P
    with TLSConn("127.0.0.1", P, "none.fwd.test") as c:
        c.send(b"GET / HTTP/1.1\r\nHost: none.fwd.test\r\n\r\n")
        resp = c.recv_all()
        assert c.eof == "close_notify"
    head, body = resp.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 "), resp
    assert key.encode() in body, resp
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m and int(m.group(1)) == len(body), resp


def _ask_without_backend(P, sni):
    """One request to a binding without a backend: the head and body of the answer."""
    with TLSConn("127.0.0.1", P, sni) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % sni.encode())
        resp = c.recv_all()
        assert c.eof == "close_notify", (c.eof, resp)
    assert resp.startswith(b"HTTP/1.1 503 "), resp
    return resp.split(b"\r\n\r\n", 1)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxyprotocol_without_backend_answers_503(fwd, version):
    """proxyprotocol= on a binding without a backend: there is no backend to write the PROXY
    header to, so none is written; the client gets the 503 naming the binding (it used to be
    dropped: the header was sent to no socket, "Bad file descriptor")."""
    P, srv = fwd["P"], fwd["srv"]
    key = "hostnameport=proxy%snone.fwd.test:%d" % (version, P)
    mark = len(srv.log())
    head, body = _ask_without_backend(P, "proxy%snone.fwd.test" % version)
    assert key.encode() in body, body
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m and int(m.group(1)) == len(body), (head, body)
    assert b"PROXY" not in head + body
    errors = [l for l in srv.log()[mark:].splitlines() if "binding=%s " % key in l and "error" in l]
    assert not errors, errors


def test_503_for_the_longest_name_sends_what_it_announces(fwd):
    """A 253-character name: the body names the binding twice, longer than the answer's old
    fixed buffer; Content-Length must equal the bytes received, and the body be whole."""
    P = fwd["P"]
    key = "hostnameport=%s:%d" % (LONGEST_NAME, P)
    head, body = _ask_without_backend(P, LONGEST_NAME)
    m = re.search(rb"Content-Length: (\d+)", head)
    assert m and int(m.group(1)) == len(body), (int(m.group(1)) if m else None, len(body), body)
    assert body.count(key.encode()) == 2, body
    assert body.endswith(b"backend=HOST:PORT\n"), body


def test_curl_503_without_backend(fwd):
    P = fwd["P"]
    p = subprocess.run(["curl", "-sk", "-i", "--max-time", str(20 * SLOW), "--connect-to",
                        "none.fwd.test:443:127.0.0.1:%d" % P, "https://none.fwd.test/"], capture_output=True)
    out = p.stdout.decode()
    assert out.startswith("HTTP/1.1 503"), (p.returncode, out, p.stderr)
    assert "hostnameport=none.fwd.test:%d" % P in out


def test_curl_through_http_backend(fwd):
    P, http = fwd["P"], fwd["http"]
    for host in ("127.0.0.1", "[::1]"):
        p = subprocess.run(["curl", "-sk", "--http1.1", "--max-time", str(20 * SLOW), "--resolve",
                            "http.fwd.test:%d:%s" % (P, host), "https://http.fwd.test:%d/path" % P],
                           capture_output=True)
        assert p.stdout == b"hello from backend %d\n" % http.port, (p.returncode, p.stdout, p.stderr)
    assert "GET /path HTTP/1.1" in http.records


def test_client_closing_without_request_is_released(st, pki):
    """A client that closes a no-backend connection without a request must not hold it open
    (it used to stay until the idle timeout, so SIGTERM waited the whole grace period)."""
    c = pki.get("fwd.test", "fwd.test", ["fwd.test", "*.fwd.test"])
    st.add_cert(c)
    P = free_port()
    st.add("hostnameport=none.fwd.test:%d" % P, c)
    st.add("hostnameport=proxyv1none.fwd.test:%d" % P, c, proxyprotocol="v1")
    st.add("hostnameport=proxyv2none.fwd.test:%d" % P, c, proxyprotocol="v2")
    st.add("hostnameport=%s:%d" % (LONGEST_NAME, P), c)
    srv = st.serve(workers=1, grace=60).start()
    for _ in range(3):
        with TLSConn("127.0.0.1", P, "none.fwd.test") as conn:
            conn.close_notify()
            assert conn.recv_all() == b""
    with TLSConn("127.0.0.1", P, "none.fwd.test"):
        pass  # a bare close, no close_notify
    time.sleep(0.5)
    srv.signal(15)
    line = srv.wait_log(r"event=draining [^\n]*", 10 * SLOW)
    rc = srv.wait(20 * SLOW)  # far less than the 60 s grace
    assert "open_connections=0" in line, srv.log()
    assert "drain_timeout" not in srv.log()
    srv.assert_clean_exit(rc)


def test_backend_that_does_not_read_pushes_back(st, pki, backends):
    """While the backend reads nothing, certbind stops reading the client (bounded buffering);
    once it reads, every byte arrives."""
    c = pki.get("fwd.test", "fwd.test", ["fwd.test", "*.fwd.test"])
    st.add_cert(c)
    slow = backends(cbe2e.never_read_handler)
    P = free_port()
    st.add("hostnameport=slow.fwd.test:%d" % P, c, backend=slow.addr)
    srv = st.serve(workers=1).start()
    total = 96 * 1024 * 1024
    chunk = os.urandom(256 * 1024)
    with TLSConn("127.0.0.1", P, "slow.fwd.test") as conn:
        conn.sock.setblocking(False)
        sent = 0
        pending = bytearray()
        stalled_since = None
        while sent < total:
            if not pending:
                conn.obj.write(chunk)
                pending += conn.out.read()
            try:
                n = conn.sock.send(pending)
                del pending[:n]
                if not pending:
                    sent += len(chunk)
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 1.0 * SLOW:
                    break
                time.sleep(0.01)
        # Kernel socket buffers on loopback hold some megabytes; certbind adds at most 16 KiB.
        assert sent < total, "96 MiB went into a backend that reads nothing: no back-pressure"
        slow.release.set()
        conn.sock.setblocking(True)
        rest = total - sent
        if pending:
            conn.sock.sendall(pending)
            sent += len(chunk)
            rest = total - sent
        while rest > 0:
            conn.send(chunk)
            rest -= len(chunk)
        conn.close_notify()
        try:
            got = slow.wait_records(1, 20)[0]
        except AssertionError as e:
            raise AssertionError("%s; log:\n%s" % (e, srv.log()))
    assert got == total
    srv.stop()
