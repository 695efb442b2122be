"""Client certificates against the real `certbind serve` (design section 9): clientca=FILE
requires a client certificate verified against the file's CAs, with the alerts a client
expects and one log line naming the binding and the reason; clientcertnegotiation=enable
alone asks for one and passes it on unverified. The backend, a Python server that parses
the PROXY v2 header and its TLVs, learns the result: PP2_TYPE_SSL with the client bits,
verify=0 only for a certificate presented and verified, and the client's CN. With PROXY v1
nothing is claimed."""

import datetime
import os
import re
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import cbe2e
from cbe2e import SLOW, Cert, TLSConn, client_ctx, free_port, s_client

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
PP2_CLIENT_SSL, PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS = 0x01, 0x02, 0x04
PP2_SUBTYPE_SSL_VERSION, PP2_SUBTYPE_SSL_CN = 0x21, 0x22


def issue(folder, stem, cn, issuer=None, ca=False, days=(-1, 90)):
    """A certificate for cn, signed by issuer (a Cert; None: self-signed), valid from
    days[0] to days[1] from now; a CA (ca=True) or a client certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days[0]))
         .not_valid_after(now + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    cert = b.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_path, key_path = folder / (stem + ".crt"), folder / (stem + ".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return Cert(cert, key, cert_path, key_path)


@pytest.fixture(scope="module")
def cc(mod_state, pki, mod_backends):
    st = mod_state
    d = pki.dir
    ca = issue(d, "clients-ca", "certbind clients CA", ca=True)
    other_ca = issue(d, "other-ca", "some other CA", ca=True)
    people = {
        "alice": issue(d, "alice", "alice", issuer=ca),
        "mallory": issue(d, "mallory", "mallory", issuer=other_ca),
        "expired": issue(d, "expired", "old alice", issuer=ca, days=(-30, -1)),
    }
    broken_ca = d / "broken-ca.pem"
    broken_ca.write_bytes(ca.cert_path.read_bytes())
    srv_cert = pki.get("cc.test", "cc.test", ["*.cc.test"])
    st.add_cert(srv_cert)
    v2 = mod_backends(cbe2e.proxy_handler)
    v1 = mod_backends(cbe2e.proxy_handler)
    v2ask = mod_backends(cbe2e.proxy_handler)
    P = free_port()
    b = lambda name, **o: st.add("hostnameport=%s.cc.test:%d" % (name, P), srv_cert, **o)
    b("ca", backend=v2.addr, proxyprotocol="v2", clientca=ca.cert_path,
      enablesessionticket="enable")
    b("ask", backend=v2ask.addr, proxyprotocol="v2", clientcertnegotiation="enable",
      enablesessionticket="enable")
    b("cav1", backend=v1.addr, proxyprotocol="v1", clientca=ca.cert_path)
    b("broken", backend=v2.addr, proxyprotocol="v2", clientca=broken_ca)
    # Fault: the CA file is damaged after it was bound; serve must fail closed on it.
    broken_ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    srv = st.serve(workers=2).start()
    yield {"P": P, "srv": srv, "ca": ca, "other_ca": other_ca, "people": people, "v2": v2,
           "v1": v1, "v2ask": v2ask, "cert": srv_cert, "broken_ca": broken_ca}
    srv.stop()


def sni(name):
    return name + ".cc.test"


def ctx_for(cc, who=None, version=None):
    return client_ctx(minv=version, maxv=version,
                      cert=cc["people"][who] if who is not None else None)


def through(cc, backend, name, ctx, host="127.0.0.1"):
    """A connection that must work: echoes, and returns the PROXY header the backend got."""
    n = len(cc[backend].records)
    with TLSConn(host, cc["P"], sni(name), ctx) as c:
        assert c.echo(b"through") == b"through"
        version = c.version()
    hdr = cc[backend].wait_records(n + 1, 5 * SLOW)[n]
    return hdr, version


def refused(cc, name, ctx):
    """A connection that must fail: the alert the client got. With TLS 1.3 the client's
    handshake ends before the server judges its certificate: the alert comes on the first
    read (sending nothing: a write to the closed connection would only meet a reset)."""
    try:
        with TLSConn("127.0.0.1", cc["P"], sni(name), ctx) as c:
            got = c.recv()
    except ssl.SSLError as e:
        return e.reason
    raise AssertionError("the server took the connection (read %r)" % got)


def failure_line(cc, since, name, reason=""):
    """The handshake_failed line of binding name (with reason in it), logged at or after
    offset since."""
    key = re.escape("hostnameport=%s:%d" % (sni(name), cc["P"]))
    return cc["srv"].wait_log(r"event=handshake_failed\b.*binding=%s\b.*%s" % (key, re.escape(reason)),
                              10 * SLOW, after=since)


# ---- clientca=FILE: required and verified ------------------------------------------------


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_valid_certificate_is_verified_and_told_to_the_backend(cc, version, host):
    hdr, got = through(cc, "v2", "ca", ctx_for(cc, "alice", version), host)
    assert got == {TLS12: "TLSv1.2", TLS13: "TLSv1.3"}[version]
    assert hdr["version"] == 2, hdr
    assert hdr["ssl_client"] == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, hdr
    assert hdr["ssl_verify"] == 0, hdr  # presented and verified
    assert hdr["ssl_sub"][PP2_SUBTYPE_SSL_CN] == b"alice"
    assert hdr["ssl_sub"][PP2_SUBTYPE_SSL_VERSION] == got.encode()
    assert dict(hdr["tlvs"])[0xE0] == cc["people"]["alice"].der  # the certificate itself


def test_missing_certificate_tls13_gets_certificate_required(cc):
    since = len(cc["srv"].log())
    assert refused(cc, "ca", ctx_for(cc, None, TLS13)) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    line = failure_line(cc, since, "ca")
    assert "client certificate required" in line and "sent none" in line, line


def test_missing_certificate_tls12_gets_handshake_failure(cc):
    since = len(cc["srv"].log())
    assert refused(cc, "ca", ctx_for(cc, None, TLS12)) == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    line = failure_line(cc, since, "ca")
    assert "client certificate required" in line, line


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_certificate_from_another_ca_gets_unknown_ca(cc, version):
    since = len(cc["srv"].log())
    assert refused(cc, "ca", ctx_for(cc, "mallory", version)) == "TLSV1_ALERT_UNKNOWN_CA"
    line = failure_line(cc, since, "ca")
    assert 'CN=\\"mallory\\"' in line, line
    assert "unable to get local issuer certificate" in line, line


@pytest.mark.parametrize("version", [TLS12, TLS13], ids=["tls12", "tls13"])
def test_expired_certificate_gets_certificate_expired(cc, version):
    since = len(cc["srv"].log())
    assert refused(cc, "ca", ctx_for(cc, "expired", version)) == "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    line = failure_line(cc, since, "ca")
    assert "certificate has expired" in line and 'CN=\\"old alice\\"' in line, line


def test_refusals_are_one_line_each_and_nothing_reaches_the_backend(cc):
    n = len(cc["v2"].records)
    since = len(cc["srv"].log())
    assert refused(cc, "ca", ctx_for(cc, "mallory", TLS13)) == "TLSV1_ALERT_UNKNOWN_CA"
    failure_line(cc, since, "ca", "unable to get local issuer")
    # A later connection's line proves the first one's logging is over.
    assert refused(cc, "ca", ctx_for(cc, "expired", TLS13)) == "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    failure_line(cc, since, "ca", "certificate has expired")
    lines = [l for l in cc["srv"].log()[since:].splitlines() if "binding=hostnameport=ca." in l]
    assert len(lines) == 2, lines
    assert len(cc["v2"].records) == n


@pytest.mark.parametrize("flag", ["-tls1_2", "-tls1_3"])
def test_certificate_request_names_the_cas(cc, flag):
    _, out = s_client("127.0.0.1", cc["P"], sni("ca"), [flag])
    assert "Acceptable client certificate CA names" in out, out
    block = out.split("Acceptable client certificate CA names", 1)[1].split("\n---", 1)[0]
    assert "certbind clients CA" in block and "some other CA" not in block, block


def test_verified_session_resumes_with_cert_sess_only(cc):
    """A resumed session had its certificate on an earlier connection: CERT_SESS without
    CERT_CONN, still verified (the session resumes only where it was verified)."""
    ctx = ctx_for(cc, "alice", TLS13)
    with TLSConn("127.0.0.1", cc["P"], sni("ca"), ctx) as c:
        assert c.echo(b"first") == b"first"  # TLS 1.3 tickets come after the handshake
        session = c.obj.session
    n = len(cc["v2"].records)
    with TLSConn("127.0.0.1", cc["P"], sni("ca"), ctx, session=session) as c:
        assert c.obj.session_reused
        assert c.echo(b"again") == b"again"
    hdr = cc["v2"].wait_records(n + 1, 5 * SLOW)[n]
    assert hdr["ssl_client"] == PP2_CLIENT_SSL | PP2_CLIENT_CERT_SESS, hdr
    assert hdr["ssl_verify"] == 0, hdr
    assert hdr["ssl_sub"][PP2_SUBTYPE_SSL_CN] == b"alice"


def test_session_without_certificate_does_not_resume_where_one_is_required(cc):
    """Same server certificate, no client CA on "ask": its session must not let a client past
    the CA binding without a certificate."""
    ctx = ctx_for(cc, None, TLS13)
    with TLSConn("127.0.0.1", cc["P"], sni("ask"), ctx) as c:
        assert c.echo(b"first") == b"first"
        session = c.obj.session
    assert session is not None
    try:
        with TLSConn("127.0.0.1", cc["P"], sni("ca"), ctx, session=session) as c:
            assert not c.obj.session_reused, "resumed without a certificate"
            got = c.recv()
    except ssl.SSLError as e:
        assert e.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        return
    raise AssertionError("taken without a certificate (read %r)" % got)


def test_damaged_ca_file_fails_closed(cc):
    """The CA file of "broken" was damaged after it was bound: its handshakes fail (never
    unverified), with internal_error and a log line naming the binding and the file."""
    since = len(cc["srv"].log())
    assert refused(cc, "broken", ctx_for(cc, "alice", TLS13)) == "TLSV1_ALERT_INTERNAL_ERROR"
    line = failure_line(cc, since, "broken")
    assert str(cc["broken_ca"]) in line, line
    assert "event=binding_broken" in cc["srv"].log(), cc["srv"].log()


# ---- clientcertnegotiation=enable without clientca: asked for, passed on unverified ------


def test_negotiation_passes_any_certificate_unverified(cc):
    hdr, _ = through(cc, "v2ask", "ask", ctx_for(cc, "mallory"))
    assert hdr["ssl_client"] == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, hdr
    assert hdr["ssl_verify"] != 0, hdr  # presented, verified against nothing
    assert hdr["ssl_sub"][PP2_SUBTYPE_SSL_CN] == b"mallory"


def test_negotiation_passes_even_a_certificate_a_ca_would_verify_as_unverified(cc):
    hdr, _ = through(cc, "v2ask", "ask", ctx_for(cc, "alice"))
    assert hdr["ssl_verify"] != 0, hdr
    assert hdr["ssl_sub"][PP2_SUBTYPE_SSL_CN] == b"alice"


def test_negotiation_without_certificate(cc):
    hdr, _ = through(cc, "v2ask", "ask", ctx_for(cc, None))
    assert hdr["ssl_client"] == PP2_CLIENT_SSL, hdr  # no CERT_CONN, no CERT_SESS
    assert hdr["ssl_verify"] != 0, hdr
    assert PP2_SUBTYPE_SSL_CN not in hdr["ssl_sub"], hdr


# ---- PROXY v1: nothing is claimed -----------------------------------------------------


def test_proxy_v1_with_a_verified_certificate_claims_nothing(cc):
    n = len(cc["v1"].records)
    with TLSConn("127.0.0.1", cc["P"], sni("cav1"), ctx_for(cc, "alice")) as c:
        assert c.echo(b"v1") == b"v1"
        port = c.local_port()
    hdr = cc["v1"].wait_records(n + 1, 5 * SLOW)[n]
    assert hdr["version"] == 1
    assert hdr["raw"] == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (port, cc["P"]), hdr


def test_proxy_v1_binding_still_requires_the_certificate(cc):
    assert refused(cc, "cav1", ctx_for(cc, None, TLS13)) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
