"""TLS-ALPN-01 (RFC 8737) answered by `serve`: a challenge put in the store through the
store's own calls (build/challenge_put, as the manager does) is served by every worker
within a second, to a ClientHello that offers ALPN acme-tls/1 alone, and to nobody else;
after the handshake the connection is closed. Deleted, it is gone as fast."""

import datetime
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import cbe2e
from cbe2e import SLOW, TLSConn, client_ctx, free_port, poll_until, s_client, thumb_of_der

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WITHIN = 3 * SLOW  # "within a second", with room for a loaded machine
ACME = "acme-tls/1"
ACME_ID_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
PUT = os.environ.get("CERTBIND_CHALLENGE_PUT") or str(Path(cbe2e.BIN).parent / "challenge_put")


# ---- the challenge ----------------------------------------------------------------


class Challenge:
    def __init__(self, folder, name, digest=None):
        """An RFC 8737 challenge certificate for name: SAN = name, and the critical
        acmeIdentifier extension holding an OCTET STRING of 32 bytes (the SHA-256 of the
        key authorization; random here)."""
        self.name = name
        self.digest = digest or os.urandom(32)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.UnrecognizedExtension(ACME_ID_OID, b"\x04\x20" + self.digest),
                           critical=True)
            .sign(key, hashes.SHA256())
        )
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.thumb = thumb_of_der(self.der)
        stem = "challenge-%s-%s" % (name, self.thumb[:8])
        self.cert_path = Path(folder) / (stem + ".crt")
        self.key_path = Path(folder) / (stem + ".key")
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        os.chmod(self.key_path, 0o600)


def challenge_put(st, ch, expires=None):
    args = [PUT, str(st.state), "put", ch.name, str(ch.cert_path), str(ch.key_path)]
    if expires is not None:
        args.append(str(int(expires)))
    p = subprocess.run(args, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()


def challenge_delete(st, name):
    p = subprocess.run([PUT, str(st.state), "delete", name], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()


# ---- clients -------------------------------------------------------------------------


def attempt(port, sni, alpn=(ACME,)):
    """(thumbprint, selected ALPN, how the server ended it) of one handshake, or
    ("alert:REASON", None, None) when it failed."""
    try:
        c = TLSConn("127.0.0.1", port, sni=sni, ctx=client_ctx(alpn=list(alpn) if alpn else None))
    except ssl.SSLError as e:
        # Python's table of reasons lacks some alerts (no_application_protocol): the
        # message then says it in words, "[SSL] tlsv1 alert no application protocol (…)".
        m = re.search(r"\] (.+?) \(_ssl", str(e))
        reason = e.reason or (m.group(1).upper().replace(" ", "_") if m else str(e))
        return "alert:%s" % reason, None, None
    except OSError as e:
        return "oserror:%s" % e.__class__.__name__, None, None
    try:
        thumb, proto = c.peer_thumb, c.alpn()
        ended = None
        if proto == ACME:
            ended = "closed" if c.closed_by_server(5 * SLOW) else "open"
        return thumb, proto, ended
    finally:
        c.close()


def acme_thumb(port, sni):
    return attempt(port, sni)[0]


def metric(admin, name):
    text = urllib.request.urlopen("http://%s/metrics" % admin, timeout=10).read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, "no %s in:\n%s" % (name, text)
    return int(m.group(1))


def answered_by(srv):
    return {int(m) for m in re.findall(r"worker=(\d+) [^\n]*event=acme_challenge_answered|"
                                       r"event=acme_challenge_answered worker=(\d+)", srv.log())
            for m in m if m}


# ---- the server ----------------------------------------------------------------------


@pytest.fixture(params=[1, 2], ids=["workers1", "workers2"])
def acme(request, st, pki, backends):
    site = pki.get("acme-site", "a.acme.test", ["a.acme.test"])
    other = pki.get("acme-default", "default.acme.test")
    for c in (site, other):
        st.add_cert(c)
    echo = backends(cbe2e.echo_handler)
    P = free_port()
    st.add("hostnameport=a.acme.test:%d" % P, site, backend=echo.addr)
    st.add("ipport=0.0.0.0:%d" % P, other)
    admin = "127.0.0.1:%d" % free_port()
    srv = st.serve(workers=request.param, admin=admin).start()
    return {"st": st, "srv": srv, "P": P, "site": site, "other": other, "echo": echo,
            "admin": admin, "workers": request.param, "dir": st.dir}


def test_challenge_live_within_a_second_and_gone_after_delete(acme):
    st, srv, P = acme["st"], acme["srv"], acme["P"]
    kids = sorted(srv.children())
    assert acme_thumb(P, "a.acme.test") == "alert:TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
    ch = Challenge(acme["dir"], "a.acme.test")
    t0 = time.monotonic()
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "a.acme.test") == ch.thumb, WITHIN), srv.log()
    took = time.monotonic() - t0
    # Every worker has it: many connections in a row, each one the challenge and acme-tls/1.
    for _ in range(12):
        assert attempt(P, "a.acme.test") == (ch.thumb, ACME, "closed")
    if acme["workers"] > 1:
        # Both workers answer (SO_REUSEPORT spreads new connections over them).
        assert poll_until(lambda: attempt(P, "a.acme.test")[0] == ch.thumb
                          and answered_by(srv) == {0, 1}, 20 * SLOW), srv.log()
    # Applied from the change log, no worker restarted, and no full rebuild for it.
    assert sorted(srv.children()) == kids
    assert "event=worker_died" not in srv.log()
    assert re.search(r"event=snapshot .*challenges=1 build=changes", srv.log()), srv.log()
    assert took < WITHIN
    # Withdrawn: acme-tls/1 fails again; ordinary clients have the binding's own certificate.
    challenge_delete(st, "a.acme.test")
    assert poll_until(lambda: acme_thumb(P, "a.acme.test").startswith("alert:"), WITHIN), srv.log()
    for _ in range(6):
        assert acme_thumb(P, "a.acme.test") == "alert:TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
        assert attempt(P, "a.acme.test", alpn=("h2", "http/1.1"))[:2] == (acme["site"].thumb, "h2")
    srv.stop()


def test_ordinary_clients_never_see_the_challenge(acme):
    st, srv, P, site = acme["st"], acme["srv"], acme["P"], acme["site"]
    ch = Challenge(acme["dir"], "a.acme.test")
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "a.acme.test") == ch.thumb, WITHIN), srv.log()
    for _ in range(3):
        # No ALPN, HTTP, and acme-tls/1 offered beside another protocol (either order):
        # ordinary clients, served the binding's certificate; acme-tls/1 never selected.
        assert attempt(P, "a.acme.test", alpn=None)[:2] == (site.thumb, None)
        assert attempt(P, "a.acme.test", alpn=("h2", "http/1.1"))[:2] == (site.thumb, "h2")
        assert attempt(P, "a.acme.test", alpn=("http/1.1",))[:2] == (site.thumb, "http/1.1")
        assert attempt(P, "a.acme.test", alpn=("h2", ACME))[:2] == (site.thumb, "h2")
        assert attempt(P, "a.acme.test", alpn=(ACME, "http/1.1"))[:2] == (site.thumb, "http/1.1")
        # An unknown protocol with acme-tls/1: no ALPN in common, still the binding's cert.
        assert attempt(P, "a.acme.test", alpn=(ACME, "x-other"))[:2] == (site.thumb, None)
    # The real ACME path seen by openssl's client: the challenge, and acme-tls/1 selected.
    rc, out = s_client("127.0.0.1", P, "a.acme.test", extra=["-alpn", ACME])
    assert "ALPN protocol: acme-tls/1" in out, out
    rc, out = s_client("127.0.0.1", P, "a.acme.test", extra=["-alpn", "h2," + ACME])
    assert "ALPN protocol: h2" in out and "acme-tls/1" not in out.split("ALPN protocol:")[1][:20], out
    srv.stop()


def test_no_challenge_fails_and_never_serves_another_certificate(acme):
    st, srv, P = acme["st"], acme["srv"], acme["P"]
    ch = Challenge(acme["dir"], "a.acme.test")
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "a.acme.test") == ch.thumb, WITHIN), srv.log()
    # A name that only the port's default (0.0.0.0) would answer: acme-tls/1 never falls
    # through to it, while an ordinary client does.
    assert acme_thumb(P, "b.acme.test") == "alert:TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
    assert attempt(P, "b.acme.test", alpn=None)[0] == acme["other"].thumb
    # No server_name at all.
    assert acme_thumb(P, None) == "alert:TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
    srv.wait_log(r'event=handshake_failed .*sni="b\.acme\.test" .*no pending challenge', 10 * SLOW)
    srv.wait_log(r"event=handshake_failed .*without a server_name", 10 * SLOW)
    srv.stop()


def test_challenge_for_a_name_without_a_binding(acme):
    st, srv, P = acme["st"], acme["srv"], acme["P"]
    ch = Challenge(acme["dir"], "c.acme.test")
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "c.acme.test") == ch.thumb, WITHIN), srv.log()
    assert attempt(P, "c.acme.test") == (ch.thumb, ACME, "closed")
    # The name's ordinary clients still get what resolution gives them: the port's default.
    assert attempt(P, "c.acme.test", alpn=None)[0] == acme["other"].thumb
    srv.stop()


def test_closed_after_handshake_no_backend_counted(acme):
    st, srv, P, echo = acme["st"], acme["srv"], acme["P"], acme["echo"]
    ch = Challenge(acme["dir"], "a.acme.test")
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "a.acme.test") == ch.thumb, WITHIN), srv.log()
    before = metric(acme["admin"], "certbind_acme_challenges_answered_total")
    c = TLSConn("127.0.0.1", P, sni="a.acme.test", ctx=client_ctx(alpn=[ACME]))
    assert c.peer_thumb == ch.thumb and c.alpn() == ACME
    # The server ends it at once (close_notify), without waiting for the client.
    assert c.closed_by_server(5 * SLOW)
    assert c.eof == "close_notify", c.eof
    c.close()
    assert echo.accepted == 0  # never a backend connection
    assert poll_until(lambda: metric(acme["admin"], "certbind_acme_challenges_answered_total")
                      >= before + 1, 10 * SLOW)
    # No 503 answer was made for it (a bare "503" would also match a port or a pid in the log).
    assert not re.search(r"HTTP/1\.1 503|\bstatus=503\b|has no backend", srv.log()), srv.log()
    srv.wait_log(r"event=acme_challenge_answered", 10 * SLOW)
    srv.stop()


def test_expired_challenge_is_not_served(acme):
    st, srv, P = acme["st"], acme["srv"], acme["P"]
    ch = Challenge(acme["dir"], "a.acme.test")
    challenge_put(st, ch, expires=time.time() + 3)
    assert poll_until(lambda: acme_thumb(P, "a.acme.test") == ch.thumb, WITHIN), srv.log()
    # No store change at expiry: the workers stop serving it on their own.
    assert poll_until(lambda: acme_thumb(P, "a.acme.test").startswith("alert:"), 10 * SLOW)
    # And the store refuses one that has expired already.
    p = subprocess.run([PUT, str(st.state), "put", "a.acme.test", str(ch.cert_path),
                        str(ch.key_path), str(int(time.time()) - 1)], capture_output=True)
    assert p.returncode == 1 and b"expired" in p.stderr, p.stderr
    srv.stop()


def test_affinity_does_not_pass_a_validation_away(st, pki, backends):
    """--workers 2 with certificate affinity on (nothing parsed yet): a name with a pending
    challenge is handshaken by the worker that accepted it, never passed to another."""
    site = pki.get("acme-site", "a.acme.test", ["a.acme.test"])
    st.add_cert(site)
    P = free_port()
    st.add("hostnameport=a.acme.test:%d" % P, site)
    admin = "127.0.0.1:%d" % free_port()
    ch = Challenge(st.dir, "a.acme.test")
    challenge_put(st, ch)
    srv = st.serve(workers=2, admin=admin).start()
    for _ in range(16):
        assert attempt(P, "a.acme.test") == (ch.thumb, ACME, "closed")
    assert answered_by(srv) == {0, 1}, srv.log()
    assert metric(admin, "certbind_connections_handed_off_total") == 0
    assert metric(admin, "certbind_acme_challenges_answered_total") == 16
    srv.stop()


def test_managed_binding_without_certificate_answers_its_challenge(st, pki):
    """A managed binding (acme=enable) waiting for its first certificate: its ordinary
    handshakes fail with a log line and no certificate; its validation is answered."""
    other = pki.get("acme-default", "default.acme.test")
    st.add_cert(other)
    P = free_port()
    st.add("ipport=0.0.0.0:%d" % P, other)
    # The row as branch acmecli stores a managed binding: no certhash, flag bit 8.
    db = sqlite3.connect(str(st.state / "certbind.db"))
    with db:
        db.execute("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) VALUES(?, '', '', '', '', 256, 0)",
                   ("hostnameport=m.acme.test:%d" % P,))
    db.close()
    srv = st.serve(workers=1).start()
    assert attempt(P, "m.acme.test", alpn=None)[0] == "alert:TLSV1_ALERT_INTERNAL_ERROR"
    assert acme_thumb(P, "m.acme.test") == "alert:TLSV1_ALERT_NO_APPLICATION_PROTOCOL"
    ch = Challenge(st.dir, "m.acme.test")
    challenge_put(st, ch)
    assert poll_until(lambda: acme_thumb(P, "m.acme.test") == ch.thumb, WITHIN), srv.log()
    assert attempt(P, "m.acme.test", alpn=None)[0] == "alert:TLSV1_ALERT_INTERNAL_ERROR"
    assert attempt(P, "m.acme.test", alpn=("h2", ACME))[0] == "alert:TLSV1_ALERT_INTERNAL_ERROR"
    # Until branch acmecli teaches the store bit 8, the row reads as damaged; after, as
    # waiting for its certificate. Either way one line names the binding and the reason.
    srv.wait_log(r"event=handshake_failed .*binding=hostnameport=m\.acme\.test:%d .*"
                 r"(waiting for its first certificate from the ACME CA|damaged)" % P, 10 * SLOW)
    srv.stop()
