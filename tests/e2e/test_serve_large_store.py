"""A store past serve's listing threshold (1024 certificates, runtime_build.c): serve reads
the store's certs/ and keys/ folders once instead of looking up each certificate's files.
A missing certificate or key file is still reported when the snapshot is built, naming its
binding; a key open to others is found when a client first asks for it (as a corrupt file
is), and that handshake fails with internal_error, never another certificate."""

import datetime
import hashlib
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cbe2e import SLOW, free_port, handshake_error, try_thumb

N = 1100  # past the threshold (1024)
WITHIN = 10 * SLOW  # a guard against a hang, not a timing claim


def make_many(folder, n):
    """n self-signed certificates m<i>.large.test sharing one key: (key path, [(path, thumb)])."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = folder / "shared.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    for i in range(n):
        name = "m%d.large.test" % i
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256()))
        path = folder / ("m%d.crt" % i)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        thumb = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        out.append((path, thumb))
    return key_path, out


def test_large_store_reports_missing_files_at_start_and_open_keys_on_first_use(st):
    many = st.dir / "many"
    many.mkdir()
    key_path, certs = make_many(many, N)
    P = free_port()
    lines = ["add cert %s key=%s" % (path, key_path) for path, _ in certs]
    lines += ["add sslcert hostnameport=m%d.large.test:%d certhash=%s" % (i, P, thumb)
              for i, (_, thumb) in enumerate(certs)]
    batch = st.dir / "batch.txt"
    batch.write_text("\n".join(lines) + "\n")
    _, out, _ = st.run("-f", batch)
    assert "certificates %d added" % N in out, out

    # Three broken in three ways, among 1100.
    no_key, no_cert, open_key = certs[1][1], certs[2][1], certs[3][1]
    st.key_file(no_key).unlink()
    (st.state / "certs" / (no_cert + ".pem")).unlink()
    os.chmod(st.key_file(open_key), 0o644)

    srv = st.serve().start()
    broken = srv.lines("binding_broken")
    by_binding = {b: [l for l in broken if "binding=hostnameport=%s:%d " % (b, P) in l]
                  for b in ("m1.large.test", "m2.large.test", "m3.large.test")}
    assert len(by_binding["m1.large.test"]) == 1, srv.log()
    assert "%s.key: No such file or directory" % no_key in by_binding["m1.large.test"][0]
    assert len(by_binding["m2.large.test"]) == 1, srv.log()
    assert "%s.pem: No such file or directory" % no_cert in by_binding["m2.large.test"][0]
    assert by_binding["m3.large.test"] == [], srv.log()  # not looked at yet
    assert len(broken) == 2, broken

    for i in (1, 2, 3):
        e = handshake_error("127.0.0.1", P, "m%d.large.test" % i)
        assert e.reason == "TLSV1_ALERT_INTERNAL_ERROR", (i, e)
    line = srv.wait_log(r"event=binding_broken [^\n]*binding=hostnameport=m3\.large\.test:%d " % P,
                        WITHIN)
    assert "chmod" in line and open_key in line, line
    # Every other certificate is served as bound, first and last included.
    for i in (0, 4, N // 2, N - 1):
        assert try_thumb("127.0.0.1", P, "m%d.large.test" % i) == certs[i][1], i
    srv.stop()
