"""Broken backends: refused, reset mid-stream, never answering, slow then stalled readers, and
one whose accept queue is full. Each time the client is closed within a bounded time and the log
says why, naming the binding."""

import socket
import struct
import threading
import time

from conftest import SLOW, figure, free_port, read_until_closed, tls_connect

IDLE = 2
CONNECT_TIMEOUT = 10  # serve's fixed backend connect timeout


def refused_addr():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    return "127.0.0.1:%d" % port


def reset_handler(c, be):
    """Sends part of a response, then resets the connection (SO_LINGER 0)."""
    c.settimeout(10 * SLOW)
    c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.2)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def silent_handler(c, be):
    """Accepts, then never reads nor writes."""
    be.stopping.wait(60)


def slow_then_stalled_handler(c, be):
    """Reads a little, slowly (4 KB every 0.1 s for 0.5 s), then stops reading for good."""
    c.settimeout(1)
    end = time.monotonic() + 0.5
    while time.monotonic() < end and not be.stopping.is_set():
        try:
            be.received += len(c.recv(4096))
        except (socket.timeout, TimeoutError):
            pass
        time.sleep(0.1)
    be.stopping.wait(60)


class Case:
    def __init__(self, name, port, event, reason):
        self.name, self.port, self.event, self.reason = name, port, event, reason
        self.error = None
        self.how = None
        self.data = b""
        self.elapsed = None
        self.binding = "ipport=127.0.0.1:%d" % port


def run_request(case):
    """TLS, one request, then read until the server closes."""
    try:
        with tls_connect("127.0.0.1", case.port) as s:
            t0 = time.monotonic()
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            case.data, case.how = read_until_closed(s, t0 + CONNECT_TIMEOUT + 30 * SLOW)
            case.elapsed = time.monotonic() - t0
    except Exception as e:  # reported by the test
        case.error = repr(e)


def run_upload(case):
    """TLS, then push 64 MB to the backend until the server closes the connection."""
    try:
        with tls_connect("127.0.0.1", case.port) as s:
            t0 = time.monotonic()
            s.settimeout(IDLE + 30 * SLOW)
            chunk = b"u" * 65536
            sent = 0
            try:
                while sent < 64 << 20:
                    s.sendall(chunk)
                    sent += len(chunk)
                case.how = "sent everything"
            except (ConnectionResetError, BrokenPipeError, ssl_errors()):
                case.how = "closed while sending"
            except (socket.timeout, TimeoutError):
                case.how = "timeout"
            case.elapsed = time.monotonic() - t0
            case.data = sent
    except Exception as e:
        case.error = repr(e)


def ssl_errors():
    import ssl
    return ssl.SSLError


def test_broken_backends_close_the_client_and_say_why(store, serve, backends):
    cert = store.cert("a.test")
    reset_be = backends(reset_handler)
    silent_be = backends(silent_handler)
    slow_be = backends(slow_then_stalled_handler)
    # A backend whose accept queue is full: connect() never completes (SYNs are dropped).
    full_be = backends(silent_handler, backlog=0, accept=False)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", full_be.port))
        fillers.append(f)
    time.sleep(0.2)

    cases = [Case("refused", free_port(), "backend_error", "refused"),
             Case("reset mid-stream", free_port(), "backend_error", "reset"),
             Case("never answering", free_port(), "idle_timeout", "idle for"),
             Case("slow, then stalled reader", free_port(), "idle_timeout", "idle for"),
             Case("accept queue full", free_port(), "backend_timeout", "did not answer")]
    addrs = [refused_addr(), reset_be.addr, silent_be.addr, slow_be.addr, full_be.addr]
    for case, addr in zip(cases, addrs):
        store.bind(case.binding, cert, "backend=%s" % addr, "disablehttp2=enable")
        case.backend = addr
    srv = serve("--idle-timeout", IDLE)
    try:
        threads = [threading.Thread(target=run_upload if c.name.startswith("slow") else
                                    run_request, args=(c,)) for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=CONNECT_TIMEOUT + 60 * SLOW)
    finally:
        for f in fillers:
            f.close()

    bounds = {"refused": 5 * SLOW, "reset mid-stream": 5 * SLOW,
              "never answering": IDLE + 5 * SLOW,
              "slow, then stalled reader": 0.5 + IDLE + 5 * SLOW,
              "accept queue full": CONNECT_TIMEOUT + 5 * SLOW}
    failed = []
    for c in cases:
        if c.error:
            failed.append("%s: %s" % (c.name, c.error))
            continue
        if c.how not in ("eof", "reset", "closed while sending"):
            failed.append("%s: the client was not closed (%s)" % (c.name, c.how))
        elif c.elapsed > bounds[c.name]:
            failed.append("%s: closed after %.1f s (bound %.1f s)" % (c.name, c.elapsed,
                                                                     bounds[c.name]))
        lines = srv.events(c.event)
        mine = [e for e in lines if e.get("binding") == c.binding]
        if not mine:
            failed.append("%s: no event=%s line naming %s; log:\n%s" % (
                c.name, c.event, c.binding, "\n".join(srv.log().splitlines()[-30:])))
        elif not any(c.reason in e.get("reason", "").lower() for e in mine):
            failed.append("%s: event=%s reasons %r do not say %r" % (
                c.name, c.event, [e.get("reason") for e in mine], c.reason))
        figure("broken backend, %s: client closed after" % c.name,
               "%.2f s (%s)" % (c.elapsed or -1, c.how))
    assert not failed, "\n".join(failed)

    # The slow reader got some of the upload; the rest waited (64 MB were offered), and the
    # server closed the connection once nothing moved for the idle timeout.
    assert slow_be.received > 0
    assert cases[3].data < 64 << 20
    # The reset case got the bytes sent before the reset, not someone else's.
    reset = cases[1]
    assert reset.data == b"" or reset.data.startswith(b"HTTP/1.1 200 OK"), reset.data[:100]
    # Nothing crashed; the server still serves a healthy binding.
    ok_port = free_port()
    store.bind("ipport=127.0.0.1:%d" % ok_port, cert)
    srv.wait_event("listen", pred=lambda e: e.get("addr") == "127.0.0.1:%d" % ok_port)
    with tls_connect("127.0.0.1", ok_port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = read_until_closed(s, time.monotonic() + 10 * SLOW)
        assert data.startswith(b"HTTP/1.1 503"), data[:100]
    assert srv.events("worker_died") == []
