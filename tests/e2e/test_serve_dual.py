"""Two certificates for one binding (certhash=T1,T2, design section 9): one ECDSA and one
RSA certificate for the same names, chosen by the client's signature algorithms (and, in
TLS 1.2, its cipher suites), ECDSA when the client accepts it. Seen by real clients:
openssl s_client limited to RSA or to ECDSA, and Python's ssl module."""

import re
import ssl

import pytest

import cbe2e
from cbe2e import TLSConn, client_ctx, free_port, handshake_error, poll_until, s_client
from cbe2e import make_cert, thumb_of_der

TLS12, TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

# The clients of the brief, as OpenSSL 3 spells their signature algorithms.
RSA_ONLY_12 = ["-tls1_2", "-sigalgs", "rsa_pss_rsae_sha256:RSA+SHA256", "-cipher",
               "ECDHE-RSA-AES128-GCM-SHA256"]
RSA_ONLY_13 = ["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"]
ECDSA_ONLY_12 = ["-tls1_2", "-sigalgs", "ECDSA+SHA256", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]
ECDSA_ONLY_13 = ["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"]


def s_client_thumb(port, sni, extra):
    """The thumbprint of the certificate openssl s_client was served, or its output."""
    rc, out = s_client("127.0.0.1", port, sni, extra)
    m = re.search(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", out, re.S)
    if rc != 0 or m is None:
        return "failed: " + out
    pem = m.group(0) + "\n"
    return thumb_of_der(ssl.PEM_cert_to_DER_cert(pem))


@pytest.fixture(scope="module")
def dual(mod_state, pki):
    st = mod_state
    ec_cert = pki.get("dual-ec", "dual.test", ["dual.test", "www.dual.test"])
    rsa_cert = pki.get("dual-rsa", "dual.test", ["www.dual.test", "dual.test"], key_type="rsa")
    st.add_cert(ec_cert)
    st.add_cert(rsa_cert)
    P = free_port()
    # Given RSA first: stored and shown ECDSA first.
    st.add("hostnameport=dual.test:%d" % P, "%s,%s" % (rsa_cert.thumb, ec_cert.thumb))
    st.add("ipport=0.0.0.0:%d" % P, "%s,%s" % (ec_cert.thumb, rsa_cert.thumb))
    srv = st.serve(workers=2).start()
    yield {"P": P, "srv": srv, "ec": ec_cert, "rsa": rsa_cert, "st": st}
    srv.stop()


def test_stored_with_the_ecdsa_certificate_first(dual):
    st, ec_cert, rsa_cert = dual["st"], dual["ec"], dual["rsa"]
    _, out, _ = st.run("--json", "show", "sslcert", "hostnameport=dual.test:%d" % dual["P"])
    b = cbe2e.json.loads(out)["bindings"][0]
    assert b["certhash"] == "%s,%s" % (ec_cert.thumb, rsa_cert.thumb), b
    assert b["certhashes"] == [ec_cert.thumb, rsa_cert.thumb], b


@pytest.mark.parametrize("sni", ["dual.test", None])
def test_default_clients_get_the_ecdsa_certificate(dual, sni):
    P = dual["P"]
    with TLSConn("127.0.0.1", P, sni) as c:
        assert c.peer_thumb == dual["ec"].thumb
    assert s_client_thumb(P, sni, []) == dual["ec"].thumb
    assert s_client_thumb(P, sni, ["-tls1_2"]) == dual["ec"].thumb


@pytest.mark.parametrize("extra", [RSA_ONLY_12, RSA_ONLY_13], ids=["tls12", "tls13"])
@pytest.mark.parametrize("sni", ["dual.test", None])
def test_rsa_only_clients_get_the_rsa_certificate(dual, extra, sni):
    assert s_client_thumb(dual["P"], sni, extra) == dual["rsa"].thumb


@pytest.mark.parametrize("extra", [ECDSA_ONLY_12, ECDSA_ONLY_13], ids=["tls12", "tls13"])
def test_ecdsa_only_clients_get_the_ecdsa_certificate(dual, extra):
    assert s_client_thumb(dual["P"], "dual.test", extra) == dual["ec"].thumb


def test_rsa_suites_alone_choose_rsa_in_tls12(dual):
    """Python's ssl cannot limit signature algorithms; its TLS 1.2 suites choose alike."""
    rsa_ctx = client_ctx(minv=TLS12, maxv=TLS12, ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    ec_ctx = client_ctx(minv=TLS12, maxv=TLS12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with TLSConn("127.0.0.1", dual["P"], "dual.test", rsa_ctx) as c:
        assert c.peer_thumb == dual["rsa"].thumb
        assert c.version() == "TLSv1.2"
    with TLSConn("127.0.0.1", dual["P"], "dual.test", ec_ctx) as c:
        assert c.peer_thumb == dual["ec"].thumb


def test_resolve_names_both_certificates(dual):
    res = dual["st"].resolve("127.0.0.1", dual["P"], "dual.test")
    assert res["certhash"] == dual["ec"].thumb, res
    assert res["certhashes"] == [dual["ec"].thumb, dual["rsa"].thumb], res
    assert res["usable"] is True, res


def test_live_change_to_one_certificate_and_back(st, pki):
    """update to one certificate: RSA-only clients are refused (no RSA certificate), then
    served again once the pair is back; no restart."""
    ec_cert = pki.get("dual-ec", "dual.test", ["dual.test", "www.dual.test"])
    rsa_cert = pki.get("dual-rsa", "dual.test", ["www.dual.test", "dual.test"], key_type="rsa")
    st.add_cert(ec_cert)
    st.add_cert(rsa_cert)
    P = free_port()
    key = "hostnameport=dual.test:%d" % P
    st.add(key, "%s,%s" % (ec_cert.thumb, rsa_cert.thumb))
    srv = st.serve().start()
    assert s_client_thumb(P, "dual.test", RSA_ONLY_12) == rsa_cert.thumb
    st.update(key, certhash=ec_cert.thumb)
    assert poll_until(lambda: s_client_thumb(P, "dual.test", RSA_ONLY_12).startswith("failed"), 10)
    assert s_client_thumb(P, "dual.test", []) == ec_cert.thumb
    st.update(key, certhash="%s,%s" % (rsa_cert.thumb, ec_cert.thumb))
    assert poll_until(lambda: s_client_thumb(P, "dual.test", RSA_ONLY_13) == rsa_cert.thumb, 10)
    assert s_client_thumb(P, "dual.test", []) == ec_cert.thumb
    srv.stop()


@pytest.mark.parametrize("broken", ["ecdsa", "rsa"])
def test_either_certificate_unusable_fails_the_binding(st, pki, broken):
    """Never the other certificate alone, never another binding: internal_error for every
    client, and one log line naming the binding and the certificate at fault."""
    ec_cert = make_cert(st.dir, "b-ec", "b.dual.test", ["b.dual.test"])
    rsa_cert = make_cert(st.dir, "b-rsa", "b.dual.test", ["b.dual.test"], key_type="rsa")
    d = pki.get("def-dual", "default-dual")
    for c in (ec_cert, rsa_cert, d):
        st.add_cert(c)
    P = free_port()
    key = "hostnameport=b.dual.test:%d" % P
    st.add(key, "%s,%s" % (ec_cert.thumb, rsa_cert.thumb))
    st.add("ipport=0.0.0.0:%d" % P, d)
    bad = ec_cert if broken == "ecdsa" else rsa_cert
    other = pki.get("other-dual-key", "other", key_type="rsa" if broken == "rsa" else "ec")
    st.key_file(bad.thumb).write_bytes(other.key_path.read_bytes())
    res = st.resolve("127.0.0.1", P, "b.dual.test")
    assert res["usable"] is False and bad.thumb in res["reason"], res
    srv = st.serve().start()
    for extra in ([], RSA_ONLY_12, RSA_ONLY_13, ECDSA_ONLY_13):
        rc, out = s_client("127.0.0.1", P, "b.dual.test", extra)
        assert "internal error" in out and "no peer certificate available" in out, (extra, out)
    e = handshake_error("127.0.0.1", P, "b.dual.test")
    assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", e
    line = srv.wait_log(r"event=binding_broken [^\n]*binding=%s " % re.escape(key), 5)
    assert bad.thumb in line, line
    # The default binding of the port is unaffected.
    assert s_client_thumb(P, None, []) == d.thumb
    srv.stop()
