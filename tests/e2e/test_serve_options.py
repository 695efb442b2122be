"""Per-binding options, each seen by a real client: protocol versions, ALPN, PROXY v1/v2,
client certificates and session tickets."""

import ssl
import subprocess
import warnings

import pytest

import cbe2e
from cbe2e import TLSConn, client_ctx, free_port, handshake_error, s_client

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


@pytest.fixture(scope="module")
def opt(mod_state, pki, mod_backends):
    st = mod_state
    c = pki.get("opt.test", "opt.test", ["*.opt.test"])
    st.add_cert(c)
    echo = mod_backends(cbe2e.echo_handler)
    v1 = mod_backends(cbe2e.proxy_handler)
    v2 = mod_backends(cbe2e.proxy_handler)
    v2cc = mod_backends(cbe2e.proxy_handler)
    P = free_port()
    b = lambda name, **o: st.add("hostnameport=%s.opt.test:%d" % (name, P), c, **o)
    b("plain", backend=echo.addr)
    b("nobackend")
    b("no12", backend=echo.addr, disabletls12="enable")
    b("no13", backend=echo.addr, disabletls13="enable")
    b("noh2", backend=echo.addr, disablehttp2="enable")
    b("v1", backend=v1.addr, proxyprotocol="v1")
    b("v2", backend=v2.addr, proxyprotocol="v2")
    b("v2cc", backend=v2cc.addr, proxyprotocol="v2", clientcertnegotiation="enable")
    b("tickets", backend=echo.addr, enablesessionticket="enable")
    srv = st.serve(workers=2).start()
    yield {"P": P, "srv": srv, "cert": c, "v1": v1, "v2": v2, "v2cc": v2cc}
    srv.stop()


def sni(name):
    return name + ".opt.test"


# ---- protocol versions ----------------------------------------------------------


def test_default_accepts_tls12_and_tls13(opt):
    for v, name in ((TLS12, "TLSv1.2"), (TLS13, "TLSv1.3")):
        with TLSConn("127.0.0.1", opt["P"], sni("plain"), client_ctx(minv=v, maxv=v)) as c:
            assert c.version() == name
            assert c.echo(b"x") == b"x"


def test_default_refuses_tls11(opt):
    """The floor is TLS 1.2: a TLS 1.1 ClientHello gets protocol_version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = client_ctx(minv=ssl.TLSVersion.TLSv1_1, maxv=ssl.TLSVersion.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0")
    e = handshake_error("127.0.0.1", opt["P"], sni("plain"), ctx)
    assert e.reason == "TLSV1_ALERT_PROTOCOL_VERSION", e


def test_disabletls12_refuses_tls12_accepts_tls13(opt):
    e = handshake_error("127.0.0.1", opt["P"], sni("no12"), client_ctx(maxv=TLS12))
    assert e.reason == "TLSV1_ALERT_PROTOCOL_VERSION", e
    with TLSConn("127.0.0.1", opt["P"], sni("no12")) as c:
        assert c.version() == "TLSv1.3"
    rc, out = s_client("127.0.0.1", opt["P"], sni("no12"), ["-tls1_2"])
    assert rc != 0 and "no peer certificate available" in out, out


def test_disabletls13_negotiates_tls12(opt):
    with TLSConn("127.0.0.1", opt["P"], sni("no13")) as c:
        assert c.version() == "TLSv1.2"
        assert c.echo(b"over 1.2") == b"over 1.2"
    e = handshake_error("127.0.0.1", opt["P"], sni("no13"), client_ctx(minv=TLS13))
    assert e.reason == "TLSV1_ALERT_PROTOCOL_VERSION", e
    rc, out = s_client("127.0.0.1", opt["P"], sni("no13"))
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out.split("SSL-Session:")[-1], out


def test_options_do_not_leak_to_other_bindings(opt):
    """One binding's options are its own: the next handshake on the port is unaffected."""
    with TLSConn("127.0.0.1", opt["P"], sni("no13")) as c:
        assert c.version() == "TLSv1.2"
    with TLSConn("127.0.0.1", opt["P"], sni("plain")) as c:
        assert c.version() == "TLSv1.3"


# ---- ALPN -------------------------------------------------------------------------


def test_alpn_offers_h2_with_a_backend(opt):
    with TLSConn("127.0.0.1", opt["P"], sni("plain"), client_ctx(alpn=["h2", "http/1.1"])) as c:
        assert c.alpn() == "h2"


def test_disablehttp2_selects_http11(opt):
    with TLSConn("127.0.0.1", opt["P"], sni("noh2"), client_ctx(alpn=["h2", "http/1.1"])) as c:
        assert c.alpn() == "http/1.1"


def test_no_backend_selects_http11(opt):
    with TLSConn("127.0.0.1", opt["P"], sni("nobackend"), client_ctx(alpn=["h2", "http/1.1"])) as c:
        assert c.alpn() == "http/1.1"


def test_curl_http2_falls_back_to_http11_when_disabled(opt):
    P = opt["P"]
    out = {}
    for name in ("plain", "noh2"):
        p = subprocess.run(["curl", "-sk", "-v", "--http2", "--max-time", "10", "-o", "/dev/null",
                            "--resolve", "%s:%d:127.0.0.1" % (sni(name), P),
                            "https://%s:%d/" % (sni(name), P)], capture_output=True)
        out[name] = p.stderr.decode(errors="replace")
    assert "ALPN: server accepted h2" in out["plain"], out["plain"]
    assert "ALPN: server accepted http/1.1" in out["noh2"], out["noh2"]


# ---- PROXY protocol -----------------------------------------------------------------


def test_proxy_v1_line(opt):
    P = opt["P"]
    for host, proto in (("127.0.0.1", "TCP4"), ("::1", "TCP6")):
        n = len(opt["v1"].records)
        with TLSConn(host, P, sni("v1")) as c:
            assert c.echo(b"after the header") == b"after the header"
            port = c.local_port()
        hdr = opt["v1"].wait_records(n + 1, 5)[n]
        assert hdr["proto"] == proto, hdr
        assert (hdr["src"], hdr["dst"]) == (host, host), hdr
        assert (hdr["sport"], hdr["dport"]) == (port, P), hdr
        assert hdr["raw"] == b"PROXY %s %s %s %d %d\r\n" % (proto.encode(), host.encode(), host.encode(), port, P)


def _v2(opt, backend, host, name, ctx):
    n = len(opt[backend].records)
    with TLSConn(host, opt["P"], sni(name), ctx) as c:
        assert c.echo(b"payload") == b"payload"
        info = {"port": c.local_port(), "version": c.version(), "cipher": c.obj.cipher()[0],
                "alpn": c.alpn()}
    return opt[backend].wait_records(n + 1, 5)[n], info


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_proxy_v2_addresses_and_tlvs(opt, host):
    hdr, info = _v2(opt, "v2", host, "v2", client_ctx(alpn=["http/1.1"]))
    assert hdr["ver_cmd"] == 0x21, hdr
    assert hdr["fam"] == (0x11 if host == "127.0.0.1" else 0x21), hdr
    assert (hdr["src"], hdr["dst"]) == (host, host), hdr
    assert (hdr["sport"], hdr["dport"]) == (info["port"], opt["P"]), hdr
    tlvs = dict(hdr["tlvs"])
    assert tlvs[0x01] == b"http/1.1"  # ALPN
    assert tlvs[0x02] == sni("v2").encode()  # authority = SNI
    assert hdr["ssl_client"] & 0x01, hdr  # PP2_CLIENT_SSL
    assert not hdr["ssl_client"] & 0x06, hdr  # no client certificate: neither CERT_CONN nor _SESS
    assert hdr["ssl_verify"] != 0, hdr  # 0 would say a certificate was presented and verified
    assert hdr["ssl_sub"][0x21] == info["version"].encode()
    assert hdr["ssl_sub"][0x23] == info["cipher"].encode()
    assert 0x22 not in hdr["ssl_sub"] and 0xE0 not in tlvs, hdr


def test_proxy_v2_tls12_version_and_cipher(opt):
    hdr, info = _v2(opt, "v2", "127.0.0.1", "v2", client_ctx(maxv=TLS12))
    assert info["version"] == "TLSv1.2"
    assert hdr["ssl_sub"][0x21] == b"TLSv1.2"
    assert hdr["ssl_sub"][0x23] == info["cipher"].encode()
    assert 0x01 not in dict(hdr["tlvs"])  # no ALPN offered, none sent


def test_proxy_v2_client_certificate(opt, pki):
    client = pki.get("client", "e2e client", [], client=True)
    hdr, info = _v2(opt, "v2cc", "127.0.0.1", "v2cc", client_ctx(cert=client))
    tlvs = dict(hdr["tlvs"])
    assert hdr["ssl_client"] & 0x02, hdr  # PP2_CLIENT_CERT_CONN
    assert hdr["ssl_client"] & 0x04, hdr  # PP2_CLIENT_CERT_SESS
    assert hdr["ssl_verify"] != 0, hdr  # presented, not verified: no client CA, the backend judges
    assert hdr["ssl_sub"][0x22] == b"e2e client"  # CN
    assert tlvs[0xE0] == client.der  # certbind's TLV: the certificate itself
    assert tlvs[0x02] == sni("v2cc").encode()


def test_clientcertnegotiation_without_certificate(opt):
    """A certificate is requested, not required: a client without one still connects."""
    hdr, _ = _v2(opt, "v2cc", "127.0.0.1", "v2cc", client_ctx())
    assert not hdr["ssl_client"] & 0x06, hdr
    assert hdr["ssl_verify"] != 0, hdr  # asked for, none presented: not verified
    assert 0x22 not in hdr["ssl_sub"] and 0xE0 not in dict(hdr["tlvs"]), hdr


def test_certificate_request_only_with_clientcertnegotiation(opt):
    """With TLS 1.2, s_client prints the CertificateRequest's types when one was sent."""
    _, out = s_client("127.0.0.1", opt["P"], sni("v2"), ["-tls1_2"])
    assert "Client Certificate Types" not in out, out
    _, out = s_client("127.0.0.1", opt["P"], sni("v2cc"), ["-tls1_2"])
    assert "Client Certificate Types" in out, out


# ---- session tickets ------------------------------------------------------------------


def _resumes(opt, name, version):
    ctx = client_ctx(minv=version, maxv=version)
    with TLSConn("127.0.0.1", opt["P"], sni(name), ctx) as c:
        assert c.echo(b"ping") == b"ping"  # TLS 1.3 tickets come after the handshake
        session = c.obj.session
    reused = []
    for _ in range(3):  # any worker may answer: the ticket keys are shared
        with TLSConn("127.0.0.1", opt["P"], sni(name), ctx, session=session) as c:
            reused.append(c.obj.session_reused)
            assert c.echo(b"pong") == b"pong"
    return reused


def test_session_ticket_resumes_only_when_enabled(opt):
    assert _resumes(opt, "tickets", TLS13) == [True, True, True]
    assert _resumes(opt, "plain", TLS13) == [False, False, False]


def test_session_ticket_tls12(opt):
    assert _resumes(opt, "tickets", TLS12) == [True, True, True]
    assert _resumes(opt, "plain", TLS12) == [False, False, False]


def test_ticket_does_not_resume_on_another_binding(opt):
    """A ticket from one binding must not resume a session on a different binding."""
    ctx = client_ctx(minv=TLS13, maxv=TLS13)
    with TLSConn("127.0.0.1", opt["P"], sni("tickets"), ctx) as c:
        c.echo(b"ping")
        session = c.obj.session
    with TLSConn("127.0.0.1", opt["P"], sni("plain"), ctx, session=session) as c:
        assert not c.obj.session_reused
        assert c.peer_thumb == opt["cert"].thumb


# ---- defaults: groups and ciphers ---------------------------------------------------------


def test_groups_x25519_and_p256_only(opt):
    P = opt["P"]
    _, out = s_client("127.0.0.1", P, sni("plain"), ["-groups", "X25519"])
    assert "Server Temp Key: X25519" in out, out
    _, out = s_client("127.0.0.1", P, sni("plain"), ["-groups", "P-256"])
    assert "Server Temp Key: ECDH, prime256v1" in out, out
    rc, out = s_client("127.0.0.1", P, sni("plain"), ["-groups", "P-384"])
    assert rc != 0 and "no peer certificate available" in out, out


def test_hello_retry_request_keeps_the_binding(opt):
    """A key share the server does not take (P-384) makes it ask again (HelloRetryRequest);
    the second ClientHello gets the same binding, options and certificate."""
    P = opt["P"]
    for name, version in (("plain", "TLSv1.3"), ("no12", "TLSv1.3")):
        _, out = s_client("127.0.0.1", P, sni(name), ["-groups", "P-384:P-256", "-showcerts"])
        assert "Server Temp Key: ECDH, prime256v1" in out, out
        assert "Protocol  : %s" % version in out or ("New, %s" % version) in out, out
        assert "CN = opt.test" in out or "CN=opt.test" in out, out


def test_tls12_cbc_only_client_refused(opt):
    """TLS 1.2 is limited to forward-secret AEAD suites."""
    e = handshake_error("127.0.0.1", opt["P"], sni("plain"), client_ctx(maxv=TLS12, ciphers="AES128-SHA"))
    assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
    e = handshake_error("127.0.0.1", opt["P"], sni("plain"),
                        client_ctx(maxv=TLS12, ciphers="ECDHE-ECDSA-AES128-SHA256"))
    assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
