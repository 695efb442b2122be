"""Section 2 end to end: every client gets exactly the certificate `certbind resolve` names.

One server, three ports:
  P: SNI a.test, SNI b.test, SNI *.w.test, IP 127.0.0.2:P, wildcard 0.0.0.0:P
  Q: wildcard [::]:Q (IPv6 only) and 0.0.0.0:Q
  R: central store folder (c.test.pem, _.cw.test.pem) and SNI d.test
"""

import os
import shutil

import pytest

from cbe2e import TLSConn, free_port, handshake_error, s_client, served_thumb, thumb_of_der


@pytest.fixture(scope="module")
def world(mod_state, pki, service_user):
    st = mod_state
    c = {n: pki.get(n) for n in ("a.test", "b.test", "d.test")}
    c["wild"] = pki.get("wild", "*.w.test", ["*.w.test"])
    c["ip2"] = pki.get("ip2", "ip2", ["127.0.0.2"])
    c["def4"] = pki.get("def4", "default-v4")
    c["def6"] = pki.get("def6", "default-v6")
    c["q4"] = pki.get("q4", "q-default-v4")
    for cert in c.values():
        st.add_cert(cert)
    P, Q, R = free_port(), free_port(), free_port()
    while len({P, Q, R}) < 3:
        Q, R = free_port(), free_port()
    st.add("hostnameport=a.test:%d" % P, c["a.test"])
    st.add("hostnameport=b.test:%d" % P, c["b.test"])
    st.add("hostnameport=*.w.test:%d" % P, c["wild"])
    st.add("ipport=127.0.0.2:%d" % P, c["ip2"], force="yes")  # ip-shadows-sni on purpose
    st.add("ipport=0.0.0.0:%d" % P, c["def4"])
    st.add("ipport=[::]:%d" % Q, c["def6"])
    st.add("ipport=0.0.0.0:%d" % Q, c["q4"])
    # Central store: one PEM file per name holding certificate and key, readable by the service user.
    ccs = st.dir / "ccs"
    ccs.mkdir()
    os.chmod(ccs, 0o755)
    for stem, cn, file in (("ccs-c", "c.test", "c.test.pem"), ("ccs-cw", "*.cw.test", "_.cw.test.pem")):
        cert = pki.get(stem, cn, [cn])
        path = ccs / file
        path.write_bytes(cert.cert_path.read_bytes() + cert.key_path.read_bytes())
        os.chmod(path, 0o600)
        if service_user is not None:
            os.chown(path, service_user.pw_uid, service_user.pw_gid)
        c[file] = cert
    st.add("ccs=%d" % R, ccspath=ccs)
    st.add("hostnameport=d.test:%d" % R, c["d.test"])
    srv = st.serve(workers=2).start()
    yield {"st": st, "certs": c, "P": P, "Q": Q, "R": R, "srv": srv}
    srv.stop()


# (connect to, port, sni, expected certificate, expected rule)
CASES = [
    ("127.0.0.1", "P", "a.test", "a.test", "sni-exact"),
    ("127.0.0.1", "P", "b.test", "b.test", "sni-exact"),
    ("127.0.0.1", "P", "B.Test", "b.test", "sni-exact"),
    ("127.0.0.1", "P", "x.w.test", "wild", "sni-wildcard"),
    ("127.0.0.1", "P", "a.x.w.test", "def4", "wildcard-ip"),  # one label only
    ("127.0.0.1", "P", "w.test", "def4", "wildcard-ip"),
    ("127.0.0.1", "P", "unknown.test", "def4", "wildcard-ip"),
    ("127.0.0.1", "P", None, "def4", "wildcard-ip"),
    ("127.0.0.3", "P", "a.test", "a.test", "sni-exact"),
    ("127.0.0.2", "P", "a.test", "ip2", "ip"),  # the IP binding shadows the SNI binding
    ("127.0.0.2", "P", "x.w.test", "ip2", "ip"),
    ("127.0.0.2", "P", None, "ip2", "ip"),
    ("::ffff:127.0.0.2", "P", "a.test", "ip2", "ip"),  # v4-mapped is the v4 address
    ("::1", "P", "a.test", "a.test", "sni-exact"),
    ("::1", "P", "x.w.test", "wild", "sni-wildcard"),
    ("::1", "P", None, "def4", "wildcard-ip"),  # 0.0.0.0 answers IPv6 too
    ("::1", "Q", None, "def6", "wildcard-ip"),  # [::] first for IPv6
    ("::1", "Q", "a.test", "def6", "wildcard-ip"),
    ("127.0.0.1", "Q", None, "q4", "wildcard-ip"),  # [::] is IPv6 only
    ("127.0.0.1", "R", "c.test", "c.test.pem", "ccs"),
    ("127.0.0.1", "R", "x.cw.test", "_.cw.test.pem", "ccs"),
    ("::1", "R", "c.test", "c.test.pem", "ccs"),
    ("127.0.0.1", "R", "d.test", "d.test", "sni-exact"),  # SNI binding before the central store
]


@pytest.mark.parametrize("host,port,sni,expect,rule", CASES,
                         ids=["%s-%s-%s" % (h, p, s or "nosni") for h, p, s, _, _ in CASES])
def test_served_certificate_is_what_resolve_says(world, host, port, sni, expect, rule):
    p = world[port]
    ip = host[7:] if host.startswith("::ffff:") else host
    res = world["st"].resolve(ip, p, sni)
    assert res["rule"] == rule, res
    assert res["usable"] is True, res
    want = world["certs"][expect].thumb
    assert res["certhash"] == want, res
    assert served_thumb(host, p, sni) == want


def test_no_sni_ipv6_and_sni_with_openssl_s_client(world):
    """The same answers with a second client implementation."""
    P, certs = world["P"], world["certs"]
    for host, sni, expect in (("127.0.0.1", None, "def4"), ("127.0.0.2", "a.test", "ip2"),
                              ("::1", "b.test", "b.test")):
        rc, out = s_client(host, P, sni, ["-showcerts"])
        assert "-----BEGIN CERTIFICATE-----" in out, out
        pem = out.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----")[0]
        import base64

        der = base64.b64decode("".join(pem.split()))
        assert thumb_of_der(der) == certs[expect].thumb, (host, sni, out)


def test_listens_dual_stack_for_sni_ports(world):
    srv, P, Q, R = world["srv"], world["P"], world["Q"], world["R"]
    listens = " ".join(srv.lines("listen"))
    for port in (P, Q, R):
        assert "addr=[::]:%d" % port in listens, listens
    # Port P has an IP binding too, but the wildcard listener already answers it.
    assert "addr=127.0.0.2:%d" % P not in listens


def test_curl_resolve_gets_the_sni_certificate(world):
    """curl with --resolve sends the SNI name; the 503 body names the binding that answered."""
    import subprocess

    P = world["P"]
    p = subprocess.run(["curl", "-sk", "--max-time", "20", "--resolve", "b.test:%d:127.0.0.1" % P,
                        "https://b.test:%d/" % P, "-w", "\\n%{http_code}"], capture_output=True)
    out = p.stdout.decode()
    assert out.endswith("503"), out
    assert "hostnameport=b.test:%d" % P in out


def test_resolve_agrees_with_serve_on_world_readable_ccs_file(st, pki):
    from cbe2e import handshake_error

    cert = pki.get("ccs-c", "c.test", ["c.test"])
    ccs = st.dir / "ccs"
    ccs.mkdir()
    os.chmod(ccs, 0o755)
    path = ccs / "c.test.pem"
    path.write_bytes(cert.cert_path.read_bytes() + cert.key_path.read_bytes())
    os.chmod(path, 0o644)
    R = free_port()
    st.add("ccs=%d" % R, ccspath=ccs)
    srv = st.serve().start()
    e = handshake_error("127.0.0.1", R, "c.test")
    assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", e
    srv.stop()
    res = st.resolve("127.0.0.1", R, "c.test")
    assert res["usable"] is False, res
