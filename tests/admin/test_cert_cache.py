"""serve --cert-cache-mb: the parsed certificates a worker holds stay within the budget,
least recently served dropped and parsed again on their next use; every handshake still
gets its own name's certificate. Counted in /metrics: certbind_cert_cache_*.

Each certificate here carries a chain of 24 intermediates (~125 KB parsed), so that a few
names overflow the smallest budget (1 MB) without importing hundreds of certificates."""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import adminlib as al
import cbe2e
from cbe2e import free_port, served_thumb

CHAIN_LEN = 24
NAMES = 16


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _chain():
    """[(cert, key)] from a self-signed root down CHAIN_LEN intermediates, issuer first."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out, issuer, issuer_key = [], None, None
    for i in range(CHAIN_LEN):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name("cache test CA %d" % i)
        cert = (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(issuer.subject if issuer else subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(issuer_key or key, hashes.SHA256()))
        out.append((cert, key))
        issuer, issuer_key = cert, key
    return out


def _site(folder, i, chain):
    """A leaf for s<i>.cache.test signed by the last intermediate; its file holds the chain."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = "s%02d.cache.test" % i
    key = ec.generate_private_key(ec.SECP256R1())
    issuer, issuer_key = chain[-1]
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=20))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(issuer_key, hashes.SHA256()))
    cert_path, key_path = folder / ("s%02d.crt" % i), folder / ("s%02d.key" % i)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for c, _ in reversed(chain):
        pem += c.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return name, cbe2e.Cert(cert, key, cert_path, key_path)


def _sites(st, port):
    chain = _chain()
    out = []
    for i in range(NAMES):
        name, c = _site(st.dir, i, chain)
        st.add_cert(c)
        st.add("hostnameport=%s:%d" % (name, port), c)
        out.append((name, c))
    return out


def _handshakes(m):
    return sum(v for _, v in m.series("certbind_handshakes_total"))


def test_a_tiny_cache_serves_every_name_its_own_certificate(st):
    """16 names (~2 MB parsed) behind a 1 MB budget, each handshaken twice in turn, with one
    worker and with two: always the right certificate; the cache drops and parses again
    (evictions, more parses than names) and never holds more than the budget."""
    P = free_port()
    sites = _sites(st, P)
    for workers in (1, 2):
        addr, _ = al.admin_addr()
        srv = st.serve(workers=workers, admin=addr, extra_args=["--cert-cache-mb", "1"]).start()
        try:
            for _ in range(2):
                for name, c in sites:
                    assert served_thumb("127.0.0.1", P, name) == c.thumb, name
            m = al.poll_metrics(addr, lambda m: _handshakes(m) >= 2 * NAMES,
                                what="%d handshakes" % (2 * NAMES))
            limit = m.get("certbind_cert_cache_limit_bytes")
            assert 1024 * 1024 - workers <= limit <= 1024 * 1024, limit
            assert m.get("certbind_cert_cache_evictions_total") > 0
            assert 0 < m.get("certbind_cert_cache_bytes") <= limit
            held = m.get("certbind_cert_cache_certificates")
            assert 0 < held < NAMES, held
            # Dropped certificates were parsed again: more parses than certificates.
            assert m.get("certbind_certificates_loaded_total") > NAMES
            # The same name twice in a row: the second is served from the cache.
            hits = m.get("certbind_cert_cache_hits_total")
            name, c = sites[0]
            for _ in range(3):
                assert served_thumb("127.0.0.1", P, name) == c.thumb
            al.poll_metrics(addr, lambda m: m.get("certbind_cert_cache_hits_total") >= hits + 2,
                            what="two more cache hits")
            code, out = al.promtool_check(al.scrape(addr).text)
            assert code == 0, out
        finally:
            srv.stop()
        assert "level=error" not in srv.log(), srv.log()


def test_the_default_budget_holds_every_name_of_a_small_store(st):
    """Without the flag: 256 MB, all workers together; 16 names are parsed once and kept."""
    P = free_port()
    sites = _sites(st, P)
    addr, _ = al.admin_addr()
    srv = st.serve(workers=1, admin=addr).start()
    try:
        for _ in range(2):
            for name, c in sites:
                assert served_thumb("127.0.0.1", P, name) == c.thumb, name
        m = al.poll_metrics(addr, lambda m: _handshakes(m) >= 2 * NAMES,
                            what="%d handshakes" % (2 * NAMES))
        assert m.get("certbind_cert_cache_limit_bytes") == 256 * 1024 * 1024
        assert m.get("certbind_cert_cache_evictions_total") == 0
        assert m.get("certbind_cert_cache_certificates") == NAMES
        assert m.get("certbind_certificates_loaded_total") == NAMES
        assert m.get("certbind_cert_cache_hits_total") == NAMES
    finally:
        srv.stop()


def test_a_bad_budget_is_refused(st):
    for bad in (["--cert-cache-mb", "0"], ["--cert-cache-mb", "-5"], ["--cert-cache-mb", "x"],
                ["--cert-cache-mb=1048577"], ["--cert-cache-mb"], ["--cert-cache-mb", "1MB"]):
        code, out, err = st.run("serve", *bad, check=False)
        assert code == 2, (bad, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("certbind: error: --cert-cache-mb"), err
        assert out == ""
