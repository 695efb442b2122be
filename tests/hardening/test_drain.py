"""SIGTERM while connections are still open: serve drains for --grace seconds, then closes what
is left, and every process exits cleanly (under ASan: without a use-after-free in teardown)."""

import signal
import socket
import time

from conftest import SLOW, free_port, http_ok_handler, read_until_closed, tls_connect


def test_sigterm_with_open_connections_closes_them_at_the_grace_limit(store, serve, backends):
    be = backends(http_ok_handler)
    port, port_be = free_port(), free_port()
    c = store.cert("a.test")
    store.bind("ipport=127.0.0.1:%d" % port, c)  # no backend: held open until a request
    store.bind("ipport=127.0.0.1:%d" % port_be, c, "backend=%s" % be.addr,
               "disablehttp2=enable")
    srv = serve("--grace", 1, "--handshake-timeout", 60)
    held = []
    try:
        for _ in range(4):
            held.append(tls_connect("127.0.0.1", port))  # handshake done, idle
            held.append(tls_connect("127.0.0.1", port_be))  # relaying, idle
            held.append(socket.create_connection(("127.0.0.1", port)))  # mid-handshake
        time.sleep(0.3 * SLOW)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(timeout=30 * SLOW)
        took = time.monotonic() - t0
        assert rc == 0, srv.log()[-3000:]
        assert took < 1 + 10 * SLOW, "stopping took %.1f s with --grace 1" % took
        timeouts = srv.events("drain_timeout")
        assert sum(int(e["closing"]) for e in timeouts) == len(held), timeouts
        for s in held:
            _, how = read_until_closed(s, time.monotonic() + 5 * SLOW)
            assert how in ("eof", "reset"), how
        assert not srv.sanitizer_errors(), "\n".join(srv.sanitizer_errors())
        assert srv.events("worker_died") == []
        # Nothing listens any more.
        probe = socket.socket()
        try:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
        finally:
            probe.close()
    finally:
        for s in held:
            s.close()
