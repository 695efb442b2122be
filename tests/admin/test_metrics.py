"""/metrics after real traffic: promtool accepts it, and every counter is exact."""

import datetime
import socket
import ssl
import time

import pytest

import adminlib as al
import cbe2e
from cbe2e import TLSConn, free_port, handshake_error


def _wait_counters(addr, want, what):
    """Polls /metrics until every (name, labels, value) in want holds."""

    def ok(m):
        return all(m.get(name, **labels) == value for name, labels, value in want)

    try:
        return al.poll_metrics(addr, ok, what=what)
    except AssertionError:
        m = al.scrape(addr)
        diff = ["%s%r: %s, want %s" % (n, l, m.get(n, **l), v) for n, l, v in want
                if m.get(n, **l) != v]
        raise AssertionError("%s: %s\n%s" % (what, "; ".join(diff), m.text))


def test_promtool_accepts_metrics_after_traffic_and_counts_are_exact(st, backends):
    """Two workers; successes, bytes through a backend, unknown SNI, reject, an unusable key."""
    www = al.make_cert_days(st.dir, "www", "www.a.test")
    rej = al.make_cert_days(st.dir, "rej", "rej.a.test")
    bad = al.make_cert_days(st.dir, "bad", "bad.a.test")
    for c in (www, rej, bad):
        st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    k_www, k_rej, k_bad = ("hostnameport=%s:%d" % (n, P) for n in ("www.a.test", "rej.a.test",
                                                                    "bad.a.test"))
    st.add(k_www, www, backend=echo.addr)
    st.add(k_rej, rej, reject="enable")
    st.add(k_bad, bad)
    st.key_file(bad.thumb).unlink()  # the binding's key is gone: key_unusable
    addr, _ = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()
    workers = [w["pid"] for w in al.status(addr)["workers"]]
    assert len(workers) == 2 and all(p > 0 for p in workers), workers

    # Nothing yet: every series is there, at zero, and promtool already accepts it.
    m0 = al.scrape(addr)
    assert m0.binding("certbind_handshakes_total", k_www) == 0
    rc, out = al.promtool_check(m0.text)
    assert rc == 0 and out == "", "promtool check metrics (%d):\n%s\n%s" % (rc, out, m0.text)

    # Successful handshakes, held open until both workers took some, each echoing data.
    base = {p: al.socket_fds(p) for p in workers}
    conns, sent = [], 0
    try:
        while len(conns) < 64:
            c = TLSConn("127.0.0.1", P, sni="www.a.test")
            assert c.peer_thumb == www.thumb
            payload = b"x" * (100 + 37 * len(conns))
            assert c.echo(payload) == payload
            sent += len(payload)
            conns.append(c)
            grown = [p for p in workers if al.socket_fds(p) > base[p]]
            if len(conns) >= 6 and len(grown) == 2:
                break
        n_ok = len(conns)
        assert len([p for p in workers if al.socket_fds(p) > base[p]]) == 2, \
            "%d connections all went to one worker" % n_ok
        # Summed over both workers: handshakes, the open gauge, bytes both ways.
        _wait_counters(addr, [("certbind_handshakes_total", {"binding": k_www, "port": P}, n_ok),
                              ("certbind_open_connections", {"binding": k_www, "port": P}, n_ok),
                              ("certbind_connections_open", {}, n_ok),
                              ("certbind_received_bytes_total", {"binding": k_www, "port": P}, sent),
                              ("certbind_sent_bytes_total", {"binding": k_www, "port": P}, sent)],
                       "counters of %d open connections over two workers" % n_ok)
    finally:
        for c in conns:
            c.close()

    # Failures: unknown name (no binding), reject=enable, an unusable key.
    for _ in range(2):
        e = handshake_error("127.0.0.1", P, "nobody.b.test")
        assert e.reason == "TLSV1_UNRECOGNIZED_NAME", e
    for _ in range(3):
        e = handshake_error("127.0.0.1", P, "rej.a.test")
        assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
    for _ in range(4):
        e = handshake_error("127.0.0.1", P, "bad.a.test")
        assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", e
    n_conns = n_ok + 2 + 3 + 4

    fail = "certbind_handshake_failures_total"
    m = _wait_counters(addr, [
        ("certbind_open_connections", {"binding": k_www, "port": P}, 0),
        ("certbind_connections_open", {}, 0),
        ("certbind_connections_accepted_total", {}, n_conns),
        (fail, {"binding": "", "port": "", "reason": "no_binding"}, 2),
        (fail, {"binding": k_rej, "port": P, "reason": "rejected"}, 3),
        (fail, {"binding": k_bad, "port": P, "reason": "key_unusable"}, 4),
    ], "failure counters")
    # Exact, and nothing counted anywhere else.
    assert m.binding("certbind_handshakes_total", k_www) == n_ok
    assert m.binding("certbind_handshakes_total", k_rej) == 0
    assert m.binding("certbind_handshakes_total", k_bad) == 0
    assert m.binding("certbind_received_bytes_total", k_www) == sent
    assert m.binding("certbind_sent_bytes_total", k_www) == sent
    for key in (k_rej, k_bad):
        assert m.binding("certbind_received_bytes_total", key) == 0
        assert m.binding("certbind_sent_bytes_total", key) == 0
    expected = {(k_rej, "rejected"): 3, (k_bad, "key_unusable"): 4}
    for labels, v in m.series(fail):
        want = expected.get((labels["binding"], labels["reason"]),
                            2 if labels["reason"] == "no_binding" else 0)
        assert v == want, (labels, v, m.text)
    assert m.get("certbind_connections_refused_total") == 0
    assert m.get("certbind_workers") == 2
    assert m.get("certbind_bindings") == 3
    # check sees the deleted key: one error finding.
    assert m.get("certbind_check_findings", severity="error") >= 1
    # Every binding has its series; every family its TYPE.
    for key in (k_www, k_rej, k_bad):
        for reason in ("key_unusable", "rejected", "protocol", "capacity", "timeout"):
            m.failures(key, reason)
    assert m.types == {
        "certbind_handshakes_total": "counter",
        "certbind_handshake_failures_total": "counter",
        "certbind_open_connections": "gauge",
        "certbind_received_bytes_total": "counter",
        "certbind_sent_bytes_total": "counter",
        "certbind_certificate_not_after_seconds": "gauge",
        "certbind_connections_accepted_total": "counter",
        "certbind_connections_open": "gauge",
        "certbind_connections_refused_total": "counter",
        "certbind_connections_handed_off_total": "counter",
        "certbind_certificates_loaded_total": "counter",
        "certbind_cert_cache_hits_total": "counter",
        "certbind_cert_cache_evictions_total": "counter",
        "certbind_cert_cache_certificates": "gauge",
        "certbind_cert_cache_bytes": "gauge",
        "certbind_cert_cache_limit_bytes": "gauge",
        "certbind_bindings": "gauge",
        "certbind_check_findings": "gauge",
        "certbind_snapshot_generation": "gauge",
        "certbind_snapshot_changed_timestamp_seconds": "gauge",
        "certbind_workers": "gauge",
        "certbind_acme_challenges_answered_total": "counter",
        "certbind_acme_orders_total": "counter",
        "certbind_ocsp_staples_served_total": "counter",
        "certbind_ocsp_fetch_failures_total": "counter",
        "certbind_ocsp_response_age_seconds": "gauge",
        "certbind_resumed_handshakes_total": "counter",
        "certbind_cert_cache_bytes": "gauge",
        "certbind_cert_cache_certificates": "gauge",
        "certbind_cert_cache_evictions_total": "counter",
        "certbind_cert_cache_hits_total": "counter",
        "certbind_cert_cache_limit_bytes": "gauge",
        "certbind_ticket_key_age_seconds": "gauge",
        "certbind_ticket_key_rotations_total": "counter",
    }, m.types
    # No binding here issues tickets; serve made the store's first ticket key at start.
    assert m.get("certbind_resumed_handshakes_total") == 0
    assert m.get("certbind_ticket_key_rotations_total") == 1
    assert m.get("certbind_ticket_key_age_seconds") >= 0

    rc, out = al.promtool_check(m.text)
    assert rc == 0 and out == "", "promtool check metrics (%d):\n%s\n%s" % (rc, out, m.text)
    srv.stop()


def test_open_connections_gauge_follows_one_held_connection(st, backends):
    www = al.make_cert_days(st.dir, "www", "www.a.test")
    st.add_cert(www)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    key = "hostnameport=www.a.test:%d" % P
    st.add(key, www, backend=echo.addr)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()
    m = al.scrape(addr)
    assert m.binding("certbind_open_connections", key) == 0
    assert m.get("certbind_connections_open") == 0

    c = TLSConn("127.0.0.1", P, sni="www.a.test")
    try:
        assert c.echo(b"hello") == b"hello"
        m = al.poll_metrics(addr, lambda m: m.binding("certbind_open_connections", key) == 1,
                            what="open_connections 1 while a connection is open")
        assert m.get("certbind_connections_open") == 1
        assert m.binding("certbind_handshakes_total", key) == 1
        # It stays 1 while the connection lasts (several scrapes, nothing changes).
        for _ in range(3):
            assert al.scrape(addr).binding("certbind_open_connections", key) == 1
    finally:
        c.close()
    m = al.poll_metrics(addr, lambda m: m.binding("certbind_open_connections", key) == 0
                        and m.get("certbind_connections_open") == 0,
                        what="open_connections 0 after the connection closed")
    assert m.binding("certbind_handshakes_total", key) == 1
    assert m.binding("certbind_received_bytes_total", key) == 5
    assert m.binding("certbind_sent_bytes_total", key) == 5
    srv.stop()


def test_failures_without_a_binding_protocol_and_timeout(st):
    """Garbage instead of a ClientHello, and a client that sends nothing: binding=""."""
    www = al.make_cert_days(st.dir, "www", "www.a.test")
    st.add_cert(www)
    P = free_port()
    key = "hostnameport=www.a.test:%d" % P
    st.add(key, www)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr, handshake_timeout=2).start()

    # Not TLS at all: a protocol failure before any binding is chosen.
    s = socket.create_connection(("127.0.0.1", P), timeout=10 * al.SLOW)
    s.sendall(b"GET / HTTP/1.1\r\nHost: www.a.test\r\n\r\n")
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    # Silent: the handshake timeout.
    s = socket.create_connection(("127.0.0.1", P), timeout=30 * al.SLOW)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    fail = "certbind_handshake_failures_total"
    m = _wait_counters(addr, [(fail, {"binding": "", "port": "", "reason": "protocol"}, 1),
                              (fail, {"binding": "", "port": "", "reason": "timeout"}, 1),
                              ("certbind_connections_accepted_total", {}, 2),
                              ("certbind_connections_open", {}, 0)],
                       "protocol and timeout failures without a binding")
    assert m.failures("", "no_binding") == 0
    for reason in ("key_unusable", "rejected", "protocol", "capacity", "timeout"):
        assert m.failures(key, reason) == 0
    assert m.binding("certbind_handshakes_total", key) == 0
    rc, out = al.promtool_check(m.text)
    assert rc == 0 and out == "", (rc, out)
    srv.stop()


def test_not_after_and_subject_of_every_certificate(st):
    a = al.make_cert_days(st.dir, "a", "a.test", days=30)
    b = al.make_cert_days(st.dir, "b", "b.test", days=400)
    unused = al.make_cert_days(st.dir, "u", "unused.test", days=7)
    for c in (a, b, unused):
        st.add_cert(c)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    st.add("ipport=0.0.0.0:%d" % P, b)
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    m = al.scrape(addr)
    series = m.series("certbind_certificate_not_after_seconds")
    got = {l["thumbprint"]: (l["subject"], v) for l, v in series}
    assert got == {a.thumb: ("CN=a.test", a.not_after), b.thumb: ("CN=b.test", b.not_after),
                   unused.thumb: ("CN=unused.test", unused.not_after)}, m.text
    # The same instant as the certificate's own notAfter.
    na = a.cert.not_valid_after
    assert a.not_after == int(na.replace(tzinfo=datetime.timezone.utc).timestamp())
    srv.stop()


def test_generation_and_changed_timestamp_follow_the_store(st):
    a = al.make_cert_days(st.dir, "a", "a.test")
    st.add_cert(a)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    m0 = al.scrape(addr)
    gen0 = m0.get("certbind_snapshot_generation")
    assert gen0 > 0
    assert m0.get("certbind_bindings") == 1
    assert abs(m0.get("certbind_snapshot_changed_timestamp_seconds") - time.time()) < 60, m0.text

    new_key = "hostnameport=b.a.test:%d" % P
    st.add(new_key, a)
    before = time.time()
    m1 = al.poll_metrics(addr, lambda m: m.get("certbind_snapshot_generation") > gen0,
                         what="a higher generation after add sslcert")
    assert m1.get("certbind_bindings") == 2
    assert m1.binding("certbind_handshakes_total", new_key) == 0
    changed = m1.get("certbind_snapshot_changed_timestamp_seconds")
    assert changed >= m0.get("certbind_snapshot_changed_timestamp_seconds")
    assert abs(changed - before) < 60, (changed, before)
    # The workers serve it too, and the new binding counts its handshakes.
    assert cbe2e.poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "b.a.test") == a.thumb,
                            10 * al.SLOW)
    al.poll_metrics(addr, lambda m: m.binding("certbind_handshakes_total", new_key) >= 1,
                    what="a handshake counted on the new binding")

    gen1 = m1.get("certbind_snapshot_generation")
    st.delete(new_key)
    m2 = al.poll_metrics(addr, lambda m: m.get("certbind_snapshot_generation") > gen1,
                         what="a higher generation after delete sslcert")
    assert m2.get("certbind_bindings") == 1
    assert not [l for l, _ in m2.series("certbind_handshakes_total") if l["binding"] == new_key]
    rc, out = al.promtool_check(m2.text)
    assert rc == 0 and out == "", (rc, out)
    srv.stop()


def _hello_only(host, port, sni):
    """Sends a ClientHello and nothing more: a binding is chosen, the handshake never ends.
    Returns the raw socket (the caller closes it)."""
    c = TLSConn(host, port, sni=sni, handshake=False)
    try:
        c.obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    c._flush()
    return c


def _closed_raw(c, timeout):
    """True when the server closes the TCP connection within timeout (read raw, so the client
    never goes on with its handshake)."""
    c.sock.settimeout(timeout)
    try:
        while c.sock.recv(65536):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_failures_under_a_binding_timeout_protocol_capacity(st, backends):
    """The binding was chosen (the ClientHello named it), then: silence, garbage, or the cap."""
    www = al.make_cert_days(st.dir, "www", "www.a.test")
    st.add_cert(www)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    key = "hostnameport=www.a.test:%d" % P
    st.add(key, www, backend=echo.addr)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr, handshake_timeout=2,
                   extra_args=["--max-connections-per-binding", "1"]).start()

    # Silence after the ClientHello: a timeout of this binding.
    c = _hello_only("127.0.0.1", P, "www.a.test")
    assert _closed_raw(c, 30 * al.SLOW)
    c.close()
    # Garbage after the ClientHello: a protocol failure of this binding.
    c = _hello_only("127.0.0.1", P, "www.a.test")
    c.sock.sendall(b"\x15\x03\x03\x00\x02\xff\xff" + b"garbage-that-is-not-tls" * 4)
    assert _closed_raw(c, 30 * al.SLOW)
    c.close()
    fail = "certbind_handshake_failures_total"
    _wait_counters(addr, [(fail, {"binding": key, "port": P, "reason": "timeout"}, 1),
                          (fail, {"binding": key, "port": P, "reason": "protocol"}, 1),
                          ("certbind_connections_open", {}, 0)],
                   "timeout and protocol failures of the binding")
    # The cap: one connection open, the next handshake to the binding refused.
    held = TLSConn("127.0.0.1", P, sni="www.a.test")
    try:
        assert held.echo(b"x") == b"x"
        e = handshake_error("127.0.0.1", P, "www.a.test")
        assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
        m = _wait_counters(addr, [(fail, {"binding": key, "port": P, "reason": "capacity"}, 1),
                                  ("certbind_open_connections", {"binding": key, "port": P}, 1)],
                           "a capacity failure while one connection is held")
    finally:
        held.close()
    assert m.binding("certbind_handshakes_total", key) == 1
    for reason in ("timeout", "protocol", "no_binding"):
        assert m.failures("", reason) == 0, reason
    assert m.failures(key, "rejected") == 0 and m.failures(key, "key_unusable") == 0
    assert m.get("certbind_connections_accepted_total") == 4
    assert m.get("certbind_connections_refused_total") == 0
    rc, out = al.promtool_check(m.text)
    assert rc == 0 and out == "", (rc, out)
    srv.stop()


def test_connections_over_max_connections_are_counted_refused(st, backends):
    www = al.make_cert_days(st.dir, "www", "www.a.test")
    st.add_cert(www)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    key = "hostnameport=www.a.test:%d" % P
    st.add(key, www, backend=echo.addr)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr, extra_args=["--max-connections", "1"]).start()
    held = TLSConn("127.0.0.1", P, sni="www.a.test")
    try:
        assert held.echo(b"x") == b"x"
        for _ in range(2):
            try:
                TLSConn("127.0.0.1", P, sni="www.a.test").close()
                raise AssertionError("a connection over --max-connections 1 was served")
            except (ssl.SSLError, OSError):
                pass
        m = _wait_counters(addr, [("certbind_connections_refused_total", {}, 2),
                                  ("certbind_connections_open", {}, 1)],
                           "2 refused connections")
    finally:
        held.close()
    assert m.get("certbind_connections_accepted_total") == 1
    assert m.binding("certbind_handshakes_total", key) == 1
    srv.stop()
