"""The admin port over HTTP: paths, methods, headers, and /status.json's content."""

import time

import pytest

import adminlib as al
import cbe2e
from cbe2e import free_port


@pytest.fixture
def one_binding(st):
    a = al.make_cert_days(st.dir, "a", "a.test")
    st.add_cert(a)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    st.add("ipport=0.0.0.0:%d" % P, a)
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    yield addr
    srv.stop()


@pytest.mark.parametrize("path", ["/nope", "/metrics/", "/status", "/status.json/x", "/index.html",
                                  "/../metrics", "//metrics", "/favicon.ico"])
def test_unknown_paths_are_404(one_binding, path):
    r = al.request(one_binding, path)
    assert r.status == 404, (path, r.status, r.body)
    assert r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/metrics", "/status.json", "/nope"])
def test_methods_other_than_get_and_head_are_405(one_binding, method, path):
    r = al.request(one_binding, path, method=method, body=b"x=1" if method != "OPTIONS" else None)
    assert r.status == 405, (method, path, r.status, r.body)


@pytest.mark.parametrize("path", ["/", "/status.js", "/metrics", "/status.json"])
def test_head_has_the_headers_and_no_body(one_binding, path):
    get = al.request(one_binding, path)
    head = al.request(one_binding, path, method="HEAD")
    assert get.status == head.status == 200, (get.status, head.status)
    assert head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_content_types_and_security_headers(one_binding):
    m = al.request(one_binding, "/metrics")
    assert m.status == 200
    assert m.headers["content-type"].startswith("text/plain; version=0.0.4"), m.headers
    assert al.request(one_binding, "/status.json").headers["content-type"].startswith(
        "application/json")
    js = al.request(one_binding, "/status.js")
    assert js.headers["content-type"].startswith("text/javascript"), js.headers
    assert b"/status.json" in js.body
    page = al.request(one_binding, "/")
    assert page.headers["content-type"].startswith("text/html"), page.headers
    assert b'<script src="/status.js">' in page.body
    csp = page.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == "default-src 'none'", csp
    assert directives.get("script-src") == "script-src 'self'", csp
    assert directives.get("connect-src") == "connect-src 'self'", csp
    assert "frame-ancestors" in directives, csp
    assert page.headers.get("x-content-type-options") == "nosniff"
    assert "no-store" in page.headers.get("cache-control", "")
    # A query string does not change what is served.
    assert al.request(one_binding, "/metrics?x=1").status == 200


def test_status_json_lists_bindings_in_resolution_order_with_health(st):
    """Design section 2: IP binding, exact name, wildcard name, wildcard IP, per port."""
    ok = al.make_cert_days(st.dir, "ok", "www.a.test", ["www.a.test", "*.a.test"], days=90)
    soon = al.make_cert_days(st.dir, "soon", "soon.b.test", days=10)
    ipc = al.make_cert_days(st.dir, "ip", "ip.test", ["ip.test"], days=90)
    dflt = al.make_cert_days(st.dir, "dflt", "default.test", days=90)
    for c in (ok, soon, ipc, dflt):
        st.add_cert(c)
    P, Q = free_port(), free_port()
    while Q == P:
        Q = free_port()
    P, Q = sorted([P, Q])
    keys_p = ["ipport=127.0.0.2:%d" % P, "hostnameport=www.a.test:%d" % P,
              "hostnameport=*.a.test:%d" % P, "ipport=0.0.0.0:%d" % P]
    # Added in another order than they resolve.
    st.add(keys_p[3], dflt)
    st.add(keys_p[2], ok)
    st.add(keys_p[1], ok)
    st.add(keys_p[0], ipc, force="yes")  # ip-shadows-sni: an error on this binding
    # Port Q: an expiring certificate, and no default for clients without SNI.
    key_q = "hostnameport=soon.b.test:%d" % Q
    st.add(key_q, soon)
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    t0 = time.time()
    s = al.status(addr)
    t1 = time.time()

    assert [p["port"] for p in s["ports"]] == [P, Q], s
    pp, pq = s["ports"]
    assert pp["total"] == 4 and [b["key"] for b in pp["bindings"]] == keys_p, pp
    assert [b["rule"] for b in pp["bindings"]] == ["ip", "sni-exact", "sni-wildcard",
                                                   "wildcard-ip"], pp
    orders = [b["order"] for b in pp["bindings"]]
    assert orders == sorted(orders) and len(set(orders)) == 4, orders
    # The same order as `certbind resolve` applies.
    assert st.resolve("127.0.0.2", P, "www.a.test")["binding"] == keys_p[0]
    assert st.resolve("127.0.0.1", P, "www.a.test")["binding"] == keys_p[1]
    assert st.resolve("127.0.0.1", P, "x.a.test")["binding"] == keys_p[2]
    assert st.resolve("127.0.0.1", P, "other.test")["binding"] == keys_p[3]

    by_key = {b["key"]: b for p in s["ports"] for b in p["bindings"]}
    ipb = by_key[keys_p[0]]
    assert ipb["health"] == "error" and "ip-shadows-sni" in ipb["findings"], ipb
    for k in keys_p[1:]:
        assert by_key[k]["health"] == "ok" and by_key[k]["findings"] == "", by_key[k]
    w = by_key[keys_p[1]]
    assert w["certhash"] == ok.thumb and w["subject"] == "CN=www.a.test", w
    assert w["names"] == ["www.a.test", "*.a.test"] and w["not_after"] == ok.not_after, w
    assert w["days_left"] in {al.days_left(ok.not_after, t0), al.days_left(ok.not_after, t1)}, w
    assert w["handshakes"] == 0 and w["failures"] == 0 and w["open"] == 0, w

    qb = by_key[key_q]
    assert pq["total"] == 1 and qb["rule"] == "sni-exact"
    assert qb["health"] == "warning", qb
    codes = [line.split(":", 1)[0] for line in qb["findings"].splitlines()]
    assert "expires-soon" in codes and "no-default-for-non-sni" in codes, qb
    assert qb["days_left"] in {al.days_left(soon.not_after, t0), al.days_left(soon.not_after, t1)}

    assert s["bindings"] == 5 and s["errors"] >= 1 and s["warnings"] >= 2, s
    assert s["generation"] > 0 and abs(s["changed_at"] - t0) < 60, s
    assert [w["pid"] > 0 for w in s["workers"]] == [True], s
    srv.stop()


def test_status_json_counts_follow_traffic(st):
    a = al.make_cert_days(st.dir, "a", "a.test")
    st.add_cert(a)
    P = free_port()
    key = "hostnameport=a.test:%d" % P
    st.add(key, a, reject="enable")
    st.add("hostnameport=b.test:%d" % P, a)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()

    for _ in range(2):
        cbe2e.handshake_error("127.0.0.1", P, "a.test")
    for _ in range(3):
        cbe2e.served_thumb("127.0.0.1", P, "b.test")

    def counts():
        s = al.status(addr)
        b = {x["key"]: x for x in s["ports"][0]["bindings"]}
        return (b[key]["failures"], b["hostnameport=b.test:%d" % P]["handshakes"],
                s["totals"]["accepted"], s["totals"]["open"])

    assert cbe2e.poll_until(lambda: counts() == (2, 3, 5, 0), al.WAIT, 0.1), counts()
    srv.stop()


def test_wildcard_ip_bindings_listed_in_resolution_order(st):
    if not al.ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    a = al.make_cert_days(st.dir, "a", "a.test")
    b = al.make_cert_days(st.dir, "b", "b.test")
    st.add_cert(a)
    st.add_cert(b)
    P = free_port()
    st.add("ipport=0.0.0.0:%d" % P, a)
    st.add("ipport=[::]:%d" % P, b)
    # What resolve says: an IPv6 client gets [::], an IPv4 client 0.0.0.0.
    assert st.resolve("::1", P)["binding"] == "ipport=[::]:%d" % P
    assert st.resolve("127.0.0.1", P)["binding"] == "ipport=0.0.0.0:%d" % P
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    try:
        keys = [x["key"] for x in al.status(addr)["ports"][0]["bindings"]]
        assert keys == ["ipport=[::]:%d" % P, "ipport=0.0.0.0:%d" % P], keys
    finally:
        srv.stop()
