"""The status page in headless Chromium: what a person sees, live updates, and a screenshot
kept as a test artefact ($CERTBIND_ARTIFACTS/status-page.png)."""

import time

import pytest

import adminlib as al
import cbe2e
from cbe2e import free_port

ROWS_JS = ("[...document.querySelectorAll('tr[data-key]')].map("
           "tr => [...tr.cells].map(td => td.innerText.trim()))")
COLUMNS = ["#", "Binding", "Rule", "Certificate", "Names", "Expires in", "Health", "Handshakes",
           "Failures", "Open", "In / out", "Backend"]


@pytest.fixture
def chromium():
    exe = cdp_mod().find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian's chromium package; scripts/install-deps)")
    try:
        import websocket  # noqa: F401
    except ImportError:
        pytest.skip("python3-websocket is not installed (scripts/install-deps)")
    browser = cdp_mod().Chromium(exe, timeout=60 * al.SLOW)
    try:
        yield browser
    finally:
        browser.close()


def cdp_mod():
    import cdp

    return cdp


def _rows(browser):
    """{binding key: {column: the cell's text}} as drawn, and the keys in page order."""
    rows = browser.evaluate(ROWS_JS) or []
    out, order = {}, []
    for cells in rows:
        assert len(cells) == len(COLUMNS), cells
        d = dict(zip(COLUMNS, cells))
        out[d["Binding"]] = d
        order.append(d["Binding"])
    return out, order


def test_status_page_in_headless_chromium(st, backends, chromium, artifacts):
    www = al.make_cert_days(st.dir, "www", "www.a.test", ["www.a.test", "a.test"], days=30)
    wild = al.make_cert_days(st.dir, "wild", "*.a.test", ["*.a.test"], days=200)
    ipc = al.make_cert_days(st.dir, "ip", "ip.test", ["ip.test"], days=100)
    dflt = al.make_cert_days(st.dir, "dflt", "default.test", days=365)
    soon = al.make_cert_days(st.dir, "soon", "soon.b.test", days=5)
    for c in (www, wild, ipc, dflt, soon):
        st.add_cert(c)
    P, Q = free_port(), free_port()
    while Q == P:
        Q = free_port()
    P, Q = sorted([P, Q])
    echo = backends(cbe2e.echo_handler)
    keys = ["ipport=127.0.0.2:%d" % P, "hostnameport=www.a.test:%d" % P,
            "hostnameport=*.a.test:%d" % P, "ipport=0.0.0.0:%d" % P]
    st.add(keys[3], dflt)
    st.add(keys[2], wild)
    st.add(keys[1], www, backend=echo.addr)
    st.add(keys[0], ipc, force="yes")  # shadows the SNI bindings for 127.0.0.2: an error
    key_q = "hostnameport=soon.b.test:%d" % Q
    st.add(key_q, soon)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=2, admin=addr).start()

    for _ in range(3):
        with cbe2e.TLSConn("127.0.0.1", P, sni="www.a.test") as c:
            assert c.peer_thumb == www.thumb
            assert c.echo(b"ping") == b"ping"
    al.poll_metrics(addr, lambda m: m.binding("certbind_handshakes_total", keys[1]) == 3,
                    what="3 handshakes counted")

    url = "http://%s/" % addr
    t0 = time.time()
    chromium.open_page()
    chromium.navigate(url)
    text = chromium.wait_text(lambda t: "in resolution order" in t and "Loading" not in t,
                              30 * al.SLOW, "the binding tables")
    t1 = time.time()
    assert chromium.evaluate("document.title") == "certbind status"
    # What a person sees: one table per port, headed with its binding count.
    assert "Port %d — 4 bindings, in resolution order" % P in text, text
    assert "Port %d — 1 binding, in resolution order" % Q in text, text
    assert text.index("Port %d" % P) < text.index("Port %d" % Q)
    # Bindings in resolution order: IP, exact name, wildcard name, wildcard IP.
    positions = [text.index("\t%s\t" % k) for k in keys]
    assert positions == sorted(positions), (positions, text)
    rows, order = _rows(chromium)
    assert order == keys + [key_q], order
    assert [rows[k]["Rule"] for k in keys] == ["ip", "sni-exact", "sni-wildcard", "wildcard-ip"]
    assert [rows[k]["#"] for k in order] == ["1", "2", "3", "5", "2"], order

    w = rows[keys[1]]
    assert w["Certificate"].startswith("CN=www.a.test "), w
    assert w["Certificate"].endswith(www.thumb[:8] + "…"), w
    assert w["Names"] == "www.a.test, a.test", w
    want_days = {"%d days" % al.days_left(www.not_after, t) for t in (t0, t1)}
    assert w["Expires in"] in want_days, (w, want_days)
    # A 30-day certificate made a moment ago: 29 days, or 30 within its first second.
    assert want_days <= {"29 days", "30 days"}, want_days
    assert w["Health"] == "ok", w
    assert w["Handshakes"] == "3" and w["Failures"] == "0" and w["Open"] == "0", w
    assert w["In / out"] == "12 B / 12 B", w
    assert w["Backend"] == echo.addr, w

    ip_row = rows[keys[0]]
    assert ip_row["Health"].splitlines()[0] == "error", ip_row
    assert "ip-shadows-sni" in ip_row["Health"], ip_row
    assert ip_row["Certificate"].startswith("CN=ip.test "), ip_row
    assert rows[keys[2]]["Certificate"].startswith("CN=*.a.test "), rows[keys[2]]
    assert rows[keys[2]]["Names"] == "*.a.test"
    assert rows[keys[3]]["Names"] == "default.test" and rows[keys[3]]["Health"] == "ok"
    q = rows[key_q]
    assert q["Health"].splitlines()[0] == "warning", q
    # Each finding on a line of its own, as check prints them (not run together).
    lines = q["Health"].splitlines()
    assert any(l.startswith("expires-soon: ") for l in lines), q
    assert any(l.startswith("no-default-for-non-sni: ") for l in lines), q
    assert q["Expires in"] in {"%d days" % al.days_left(soon.not_after, t) for t in (t0, t1)}, q
    # The badge is drawn as a badge, in the warning colour class.
    assert chromium.evaluate(
        "document.querySelector('tr[data-key=\"%s\"] .badge').className" % key_q) == "badge warning"
    # The header and the banner.
    assert "workers 2" in text.replace("\n", " ").replace("\t", " "), text
    assert "error(s)" in text and "Run certbind check for the fix." in text, text
    assert "Cannot reach certbind" not in text

    # Live: more handshakes appear without a reload (the page refreshes every 5 s).
    chromium.evaluate("window.__not_reloaded = 42")
    for _ in range(2):
        assert cbe2e.served_thumb("127.0.0.1", P, "www.a.test") == www.thumb
    chromium.wait_text(lambda t: _rows(chromium)[0][keys[1]]["Handshakes"] == "5",
                       15 * al.SLOW, "5 handshakes")
    assert chromium.evaluate("window.__not_reloaded") == 42, "the page was reloaded"

    # The artefact: a screenshot of the page as drawn.
    shot = artifacts / "status-page.png"
    png = chromium.screenshot(shot)
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:16]
    assert len(png) > 10 * 1024, len(png)
    assert shot.stat().st_size == len(png)

    # The server goes away: the page says so, and keeps the last figures.
    srv.stop()
    text = chromium.wait_text(lambda t: "Cannot reach certbind" in t, 15 * al.SLOW,
                              "'Cannot reach certbind'")
    assert "Port %d — 4 bindings" % P in text
    assert chromium.evaluate("window.__not_reloaded") == 42
    chromium.screenshot(artifacts / "status-page-unreachable.png")


def test_status_page_with_no_bindings(st, chromium):
    addr, _ = al.admin_addr()
    srv = st.serve(admin=addr).start()
    chromium.open_page()
    chromium.navigate("http://%s/" % addr)
    text = chromium.wait_text(lambda t: "No bindings yet" in t, 30 * al.SLOW, "'No bindings yet'")
    assert "All 0 bindings healthy." in text, text
    srv.stop()
