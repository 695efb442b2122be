"""Refused handshakes: the right alert, no certificate at all, and never another binding's."""

import os
import re

import pytest

from cbe2e import IS_ROOT, free_port, handshake_error, make_cert, s_client, served_thumb


def test_unknown_sni_without_default_is_unrecognized_name(st, pki):
    a = pki.get("a.test")
    st.add_cert(a)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    srv = st.serve().start()
    assert st.resolve("127.0.0.1", P, "other.test")["rule"] == "none"
    e = handshake_error("127.0.0.1", P, "other.test")
    assert e.reason == "TLSV1_UNRECOGNIZED_NAME", e
    # A real client sees the alert and no certificate.
    _, out = s_client("127.0.0.1", P, "other.test")
    assert "unrecognized name" in out, out
    assert "no peer certificate available" in out, out
    assert served_thumb("127.0.0.1", P, "a.test") == a.thumb
    line = srv.wait_log(r"event=handshake_failed .*sni=\"other.test\"", 5)
    assert "binding=-" in line and "no binding matches" in line, line
    srv.stop()


def test_no_sni_without_default_is_handshake_failure(st, pki):
    a = pki.get("a.test")
    st.add_cert(a)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    srv = st.serve().start()
    for host in ("127.0.0.1", "::1"):
        e = handshake_error(host, P, None)
        assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
    _, out = s_client("127.0.0.1", P, None)
    assert "handshake failure" in out and "no peer certificate available" in out, out
    srv.stop()


def test_reject_is_handshake_failure_even_with_a_default(st, pki):
    a, d = pki.get("a.test"), pki.get("def4", "default-v4")
    st.add_cert(a)
    st.add_cert(d)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a, reject="enable")
    st.add("ipport=0.0.0.0:%d" % P, d)
    srv = st.serve().start()
    res = st.resolve("127.0.0.1", P, "a.test")
    assert res["binding"] == "hostnameport=a.test:%d" % P and res["usable"] is False, res
    e = handshake_error("127.0.0.1", P, "a.test")
    assert e.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", e
    line = srv.wait_log(r"event=handshake_failed .*binding=hostnameport=a.test:%d\b" % P, 5)
    assert "reject" in line, line
    # Other clients on the port still get the default.
    assert served_thumb("127.0.0.1", P, "b.test") == d.thumb
    srv.stop()


def _break_key(st, cert, how, pki, service_user):
    path = st.key_file(cert.thumb)
    assert path.exists(), path
    if how == "deleted":
        path.unlink()
    elif how == "other-key":
        other = pki.get("other-key", "other")
        path.write_bytes(other.key_path.read_bytes())
    elif how == "unreadable-by-service-user":
        os.chown(path, 0, 0)
        os.chmod(path, 0o600)
    elif how == "corrupt":
        path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    else:
        raise ValueError(how)


KEY_BREAKS = ["deleted", "other-key", "corrupt", "unreadable-by-service-user"]


@pytest.mark.parametrize("how", KEY_BREAKS)
def test_broken_key_is_internal_error_never_the_default(st, pki, service_user, how):
    if how == "unreadable-by-service-user" and not IS_ROOT:
        pytest.skip("needs root: the key must be readable by root and not by the service user")
    b = make_cert(st.dir, "broken", "broken.test", ["broken.test"])
    ok, d = pki.get("a.test"), pki.get("def4", "default-v4")
    for c in (b, ok, d):
        st.add_cert(c)
    P = free_port()
    st.add("hostnameport=broken.test:%d" % P, b)
    st.add("hostnameport=a.test:%d" % P, ok)
    st.add("ipport=0.0.0.0:%d" % P, d)
    _break_key(st, b, how, pki, service_user)
    res = st.resolve("127.0.0.1", P, "broken.test")
    assert res["rule"] == "sni-exact" and res["usable"] is False, res
    srv = st.serve().start()
    key = "hostnameport=broken.test:%d" % P
    # Logged once, naming the binding: at snapshot time when the files themselves are
    # missing or unreadable; when a client first asks for the certificate when only
    # its content is wrong (certificates are parsed on first use).
    on_first_use = how in ("other-key", "corrupt")
    broken = srv.lines("binding_broken")
    if on_first_use:
        assert broken == [], srv.log()
    else:
        assert len(broken) == 1 and "binding=%s " % key in broken[0], srv.log()
    for host in ("127.0.0.1", "::1"):
        e = handshake_error(host, P, "broken.test")
        assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", e
    broken = srv.lines("binding_broken")
    assert len(broken) == 1 and "binding=%s " % key in broken[0], srv.log()
    _, out = s_client("127.0.0.1", P, "broken.test")
    assert "internal error" in out and "no peer certificate available" in out, out
    line = srv.wait_log(r"event=handshake_failed [^\n]*binding=%s " % re.escape(key), 5)
    assert 'sni="broken.test"' in line, line
    # The rest of the port is unaffected.
    assert served_thumb("127.0.0.1", P, "a.test") == ok.thumb
    assert served_thumb("127.0.0.1", P, None) == d.thumb
    srv.stop()


def test_ip_binding_with_broken_key_does_not_fall_back_to_sni(st, pki):
    """Rule 1 matched: its failure must not fall through to the SNI binding or the default."""
    b = make_cert(st.dir, "broken-ip", "broken-ip")
    a, d = pki.get("a.test"), pki.get("def4", "default-v4")
    for c in (b, a, d):
        st.add_cert(c)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    st.add("ipport=0.0.0.0:%d" % P, d)
    st.add("ipport=127.0.0.2:%d" % P, b, force="yes")
    st.key_file(b.thumb).unlink()
    srv = st.serve().start()
    for sni in ("a.test", None):
        e = handshake_error("127.0.0.2", P, sni)
        assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", (sni, e)
    srv.wait_log(r"event=handshake_failed [^\n]*binding=ipport=127.0.0.2:%d " % P, 5)
    assert served_thumb("127.0.0.1", P, "a.test") == a.thumb
    srv.stop()


def test_binding_to_certificate_not_in_store_is_internal_error(st, pki):
    a, d = pki.get("a.test"), pki.get("def4", "default-v4")
    st.add_cert(a)
    st.add_cert(d)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    st.add("ipport=0.0.0.0:%d" % P, d)
    st.run("delete", "cert", a.thumb, "force=yes")
    srv = st.serve().start()
    e = handshake_error("127.0.0.1", P, "a.test")
    assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", e
    line = srv.wait_log(r"event=handshake_failed [^\n]*binding=hostnameport=a.test:%d " % P, 5)
    assert "not in the store" in line, line
    srv.stop()
