"""Hostile clients: a flood of connections that never speak, malformed ClientHellos, and a
client that stops reading while its backend sends a lot."""

import os
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import (NOFILE, SLOW, figure, free_port, peer_der, read_until_closed,
                      tls_connect, wait_readable)
from tlswire import (EXT_PADDING, EXT_SERVER_NAME, Answer, ClientHello, real_client_hello,
                     sni_ext, wrap_records)

HANDSHAKE_TIMEOUT = 2


def two_sites(store):
    """a.test and b.test on one port, SNI only (no default: a client without a known name
    gets no certificate at all)."""
    port = free_port()
    a = store.cert("a.test")
    b = store.cert("b.test")
    store.bind("hostnameport=a.test:%d" % port, a)
    store.bind("hostnameport=b.test:%d" % port, b)
    return port, a, b


# -- 1. slowloris ------------------------------------------------------------------------------

FLOOD = 1000


def test_silent_flood_is_timed_out_and_others_are_served(store, serve):
    if NOFILE < FLOOD + 200:
        pytest.skip("RLIMIT_NOFILE %d is too low for %d connections" % (NOFILE, FLOOD))
    port, a, _ = two_sites(store)
    srv = serve("--handshake-timeout", HANDSHAKE_TIMEOUT)
    flood = []
    try:
        t0 = time.monotonic()
        for _ in range(FLOOD):
            s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
            flood.append(s)
        opened = time.monotonic()
        # During the flood, a normal client is served at once.
        times = []
        for _ in range(3):
            h0 = time.monotonic()
            with tls_connect("127.0.0.1", port, sni="a.test") as s:
                assert peer_der(s) == a.der
            times.append(time.monotonic() - h0)
        figure("handshake during a %d-connection silent flood (s, worst of 3)" % FLOOD,
               "%.3f" % max(times))
        assert max(times) < 3.0, "a handshake during the flood took %.2f s" % max(times)
        # After the handshake timeout every silent connection has been closed by the server.
        deadline = opened + HANDSHAKE_TIMEOUT + 20 * SLOW
        closed = wait_readable(flood, deadline)
        assert len(closed) == FLOOD, "%d of %d silent connections still open %.1f s after " \
            "opening" % (FLOOD - len(closed), FLOOD, time.monotonic() - t0)
        for s in flood:
            try:
                assert s.recv(16) == b""
            except ConnectionResetError:
                pass
        timeouts = srv.wait_event("handshake_timeout", count=FLOOD, timeout=10)
        assert all(e["reason"].startswith("no handshake within 2000 ms") for e in timeouts)
        # The flood is gone; the server still answers.
        with tls_connect("127.0.0.1", port, sni="a.test") as s:
            assert peer_der(s) == a.der
    finally:
        for s in flood:
            s.close()


# -- 2. malformed ClientHellos ----------------------------------------------------------------

def probe(port, payload, half_close, deadline):
    """Sends payload on a new connection; returns what the server answered (Answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    try:
        try:
            s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server already gave up on it (reset, not connected): a close
        data, how = read_until_closed(s, deadline)
        return Answer(data, how)
    finally:
        s.close()


def bad_hellos(a, b):
    """(name, payload, half_close, expectation): reject = alert or close, never a
    ServerHello; alert = an alert record; ("cert", X) = a ServerHello with certificate X
    (TLS 1.2, where it is visible); any = reject or a ServerHello (TLS 1.3: the certificate
    is encrypted)."""
    rnd = random.Random(7)
    cases = []
    hello = real_client_hello("a.test")
    hello12 = real_client_hello("a.test", tls12=True)
    ch, ch12 = ClientHello(hello), ClientHello(hello12)

    # Positive controls: the same machinery, unchanged, gets the right certificate.
    cases.append(("control a.test (TLS 1.2)", ch12.wire(), False, ("cert", a)))
    cases.append(("control b.test (TLS 1.2)",
                  ch12.copy().set_ext(EXT_SERVER_NAME, sni_ext(b"b.test")).wire(), False,
                  ("cert", b)))
    cases.append(("control A.TEST. (case, trailing dot)",
                  ch12.copy().set_ext(EXT_SERVER_NAME, sni_ext(b"A.TEST.")).wire(), False,
                  ("cert", a)))

    # Truncated: cut at several offsets, with the client going quiet or half-closing.
    for cut in sorted({1, 3, 5, 6, 9, 43, 80, len(hello) // 2, len(hello) - 1}):
        for half in (False, True):
            cases.append(("truncated at %d/%d%s" % (cut, len(hello), " +FIN" if half else ""),
                          hello[:cut], half, "reject"))
    # Garbage.
    for n in (1, 5, 100, 5000, 70000):
        cases.append(("random %d bytes" % n, bytes(rnd.getrandbits(8) for _ in range(n)), True,
                      "reject"))
    cases.append(("handshake record of garbage",
                  wrap_records(bytes(rnd.getrandbits(8) for _ in range(300))), True, "reject"))
    cases.append(("plain HTTP", b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", False, "reject"))
    cases.append(("SSLv2-style hello", bytes.fromhex("802e0103010015000000100700c0") +
                  bytes(16) + bytes(16), False, "reject"))
    cases.append(("handshake length 3 MB claimed",
                  wrap_records(b"\x01\x30\x00\x00" + bytes(16380)) +
                  wrap_records(bytes(16384)), True, "reject"))

    # Oversized: 16 KB+ of extensions.
    big = bytes(rnd.getrandbits(8) for _ in range(17000))
    cases.append(("17 KB padding, one 17 KB record (over the record limit)",
                  ch.copy().add_ext(EXT_PADDING, bytes(17000)).wire(fragment=None), False,
                  "reject"))
    cases.append(("17 KB unknown extension, fragmented (TLS 1.2)",
                  ch12.copy().add_ext(0xFE0D, big).wire(), False, ("cert", a)))
    cases.append(("17 KB unknown extension, fragmented (TLS 1.3)",
                  ch.copy().add_ext(0xFE0D, big).wire(), False, "any"))
    cases.append(("60 KB of extensions in 1-byte..16 KB records",
                  ch12.copy().add_ext(0xFE0D, bytes(30000)).add_ext(0xFE0E, bytes(30000))
                  .wire(fragment=4000), False, ("cert", a)))
    cases.append(("extension list longer than the hello",
                  _bad_ext_len(ch12), False, "reject"))

    # Garbage server_name: every one is refused with an alert, never resolved to a binding.
    for label, name in [
            ("NUL inside", b"a.te\x00st"), ("NUL after the name", b"a.test\x00"),
            ("NUL then another site", b"a.test\x00b.test"), ("only NUL", b"\x00"),
            ("300-byte label", b"x" * 300 + b".test"), ("300-byte label before a.test",
                                                       b"x" * 300 + b".a.test"),
            ("254-byte name", (b"a" * 60 + b".") * 4 + b"test"),
            ("non-ASCII UTF-8", "\u00e4.test".encode()), ("Latin-1 byte", b"\xe4.test"),
            ("fullwidth a", "\uff41.test".encode()), ("0xff bytes", b"\xff\xfe.test"),
            ("control characters", b"a\x01.test"), ("space", b"a .test"),
            ("empty label", b"a..test"), ("leading dot", b".a.test"),
            ("wildcard", b"*.test"), ("slash", b"a.test/b.test"),
            ("percent", b"a%2etest"), ("colon and port", b"a.test:443")]:
        cases.append(("SNI " + label, ch12.copy().set_ext(EXT_SERVER_NAME, sni_ext(name)).wire(),
                      False, "alert"))
    cases.append(("SNI empty name", ch12.copy().set_ext(EXT_SERVER_NAME, sni_ext(b"")).wire(),
                  False, "alert"))
    cases.append(("SNI name type 1", ch12.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"a.test", name_type=1)).wire(), False, "alert"))
    cases.append(("SNI list length short", ch12.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"a.test", list_len_delta=-2)).wire(), False, "alert"))
    cases.append(("SNI list length long", ch12.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"a.test", list_len_delta=+7)).wire(), False, "alert"))
    cases.append(("SNI name length past the list", ch12.copy().set_ext(
        EXT_SERVER_NAME, b"\x00\x09\x00\x00\x20a.test").wire(), False, "alert"))
    cases.append(("SNI extension of 1 byte",
                  ch12.copy().set_ext(EXT_SERVER_NAME, b"\x00").wire(), False, "alert"))
    cases.append(("SNI twice (a.test then b.test)", ch12.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"a.test")).add_ext(EXT_SERVER_NAME, sni_ext(b"b.test"),
                                                    first=True).wire(), False, "alert"))
    cases.append(("SNI unknown name", ch12.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"c.test")).wire(), False, "alert"))
    cases.append(("no SNI (no default binding)",
                  ch12.copy().drop_ext(EXT_SERVER_NAME).wire(), False, "alert"))
    cases.append(("SNI NUL, TLS 1.3", ch.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"a.test\x00")).wire(), False, "alert"))
    cases.append(("SNI 300-byte label, TLS 1.3", ch.copy().set_ext(
        EXT_SERVER_NAME, sni_ext(b"x" * 300 + b".test")).wire(), False, "alert"))
    return cases


def _bad_ext_len(ch):
    hs = bytearray(ch.handshake())
    off = 4 + len(ch.head)
    n = int.from_bytes(hs[off:off + 2], "big")
    hs[off:off + 2] = (n + 40).to_bytes(2, "big")
    return wrap_records(bytes(hs), ch.record_version)


def test_malformed_client_hellos_get_an_alert_or_a_close(store, serve):
    port, a, b = two_sites(store)
    srv = serve("--handshake-timeout", HANDSHAKE_TIMEOUT)
    workers = srv.workers()
    cases = bad_hellos(a, b)
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 20 * SLOW
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = [pool.submit(probe, port, payload, half, deadline)
                   for _, payload, half, _ in cases]
        answers = [f.result() for f in futures]
    failed = []
    for (name, _, _, want), ans in zip(cases, answers):
        if ans.how == "timeout":
            failed.append("%s: still open after the handshake timeout: %r" % (name, ans))
        elif want == "alert" and ans.kind != "alert":
            failed.append("%s: want an alert, got %r" % (name, ans))
        elif want == "reject" and ans.kind not in ("alert", "close"):
            failed.append("%s: want an alert or a close, got %r" % (name, ans))
        elif want == "any" and ans.kind not in ("alert", "close", "server_hello"):
            failed.append("%s: got %r" % (name, ans))
        elif isinstance(want, tuple):
            if ans.kind != "server_hello" or ans.cert != want[1].der:
                failed.append("%s: want %s's certificate, got %r%s" % (
                    name, want[1].cn, ans, " (another certificate!)" if ans.cert else ""))
    assert not failed, "%d of %d cases failed:\n%s" % (len(failed), len(cases),
                                                      "\n".join(failed))
    alerts = {}
    for (name, _, _, _), ans in zip(cases, answers):
        if name.startswith("SNI") and ans.kind == "alert":
            alerts[ans.alert] = alerts.get(ans.alert, 0) + 1
    figure("malformed ClientHello cases / alerts for bad SNI", "%d / %s" % (len(cases), alerts))
    # Nothing crashed: the same workers serve a normal handshake, nobody was respawned.
    for sni, c in (("a.test", a), ("b.test", b)):
        with tls_connect("127.0.0.1", port, sni=sni) as s:
            assert peer_der(s) == c.der
    assert srv.workers() == workers
    assert srv.events("worker_died") == []
    assert srv.proc.poll() is None


# -- 3. a client that stops reading -------------------------------------------------------------

OFFER = 200 * 1024 * 1024


def test_client_that_stops_reading_holds_memory_flat(store, serve, backends):
    def firehose(c, be):
        """Sends up to 200 MB, as fast as the other side takes it."""
        chunk = os.urandom(65536)
        c.settimeout(0.5)
        while be.sent < OFFER and not be.stopping.is_set():
            try:
                n = c.send(chunk)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            be.sent += n
            be.last_send = time.monotonic()

    be = backends(firehose)
    be.last_send = time.monotonic()
    port = free_port()
    c = store.cert("a.test")
    store.bind("ipport=127.0.0.1:%d" % port, c, "backend=%s" % be.addr)
    srv = serve()
    # Warm up both workers (certificate contexts, OpenSSL buffers), then take the baseline.
    for _ in range(4):
        with tls_connect("127.0.0.1", port) as s:
            got = 0
            while got < 1 << 20:
                got += len(s.recv(65536))
    time.sleep(0.5)
    base = srv.rss_kb()
    sent_before = be.sent
    stalled = tls_connect("127.0.0.1", port, rcvbuf=4096)
    try:
        # Wait until the backend cannot send any more: everything in between is full.
        deadline = time.monotonic() + 60 * SLOW
        while time.monotonic() < deadline:
            if be.sent - sent_before > 0 and time.monotonic() - be.last_send > 2.0:
                break
            time.sleep(0.2)
        pushed = be.sent - sent_before
        peak = srv.rss_kb()
        growth = (peak - base) / 1024.0
        figure("stalled client: bytes the backend got out of %d MB offered" % (OFFER >> 20),
               "%.1f MB" % (pushed / 1048576.0))
        figure("stalled client: worker RSS growth", "%.1f MB (%d -> %d kB)" % (growth, base,
                                                                             peak))
        assert time.monotonic() - be.last_send > 2.0, "the backend never stopped sending"
        assert pushed < 64 * 1024 * 1024, "%d bytes went through to a client that reads " \
            "nothing" % pushed
        assert growth < 30, "worker RSS grew %.1f MB while the client did not read" % growth
        # The connection is still alive: reading resumes the flow.
        stalled.settimeout(10 * SLOW)
        got = 0
        while got < 1 << 20:
            chunk = stalled.recv(65536)
            assert chunk, "the server closed the stalled connection"
            got += len(chunk)
    finally:
        stalled.close()
