"""`certbind deploy` and bindings with two certificates (certhash=T1,T2, design section 9):
each certificate is moved by its own key type, an RSA renewal replaces the RSA certificate
only, an ECDSA one the ECDSA certificate only."""
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from deploykit import days_ago, make_cert

NAMES = ["www.example.com", "example.com"]
DUAL = "hostnameport=www.example.com:8443"


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certhashes(cb, key):
    for b in cb.json("show", "sslcert")["bindings"]:
        if b["key"] == key:
            hashes = b["certhash"].split(",")
            assert b.get("certhashes", hashes) == hashes, b
            return hashes
    raise AssertionError("no binding %s" % key)


def setup_pair(cb):
    ec1 = make_cert(NAMES, days_ago(60))
    rsa1 = make_cert(NAMES, days_ago(60), key=rsa_key())
    cb.add_cert(ec1)
    cb.add_cert(rsa1)
    cb.bind(DUAL, "%s,%s" % (ec1.thumb, rsa1.thumb))
    return ec1, rsa1


def test_rsa_renewal_replaces_only_the_rsa_certificate(cb):
    ec1, rsa1 = setup_pair(cb)
    cb.bind("ipport=0.0.0.0:8443", rsa1)  # a single binding of the RSA certificate moves too
    rsa2 = make_cert(NAMES, days_ago(1), key=rsa_key())
    r = cb.deploy(rsa2, "match=previous", json_out=True)
    assert r.returncode == 0, r.stderr
    assert certhashes(cb, DUAL) == [ec1.thumb, rsa2.thumb]
    assert certhashes(cb, "ipport=0.0.0.0:8443") == [rsa2.thumb]
    doc = __import__("json").loads(r.stdout)
    moves = {m["binding"]: (m["from"], m["to"]) for m in doc["moves"]}
    assert moves[DUAL] == (rsa1.thumb, rsa2.thumb), doc
    # rsa1 is unused now, ec1 is not
    assert doc["unused"] == [rsa1.thumb], doc


def test_ecdsa_renewal_by_hostname_replaces_only_the_ecdsa_certificate(cb):
    ec1, rsa1 = setup_pair(cb)
    ec2 = make_cert(NAMES, days_ago(1))
    r = cb.deploy(ec2, "match=hostname")
    assert r.returncode == 0, r.stderr
    assert certhashes(cb, DUAL) == [ec2.thumb, rsa1.thumb]
    line = [l for l in r.stdout.splitlines() if DUAL in l]
    assert len(line) == 1 and ec1.thumb in line[0] and ec2.thumb in line[0], r.stdout


def test_preview_of_a_pair_changes_nothing(cb):
    ec1, rsa1 = setup_pair(cb)
    before = cb.snapshot()
    rsa2 = make_cert(NAMES, days_ago(1), key=rsa_key())
    r = cb.deploy(rsa2, "preview=yes")
    assert r.returncode == 0, r.stderr
    assert rsa1.thumb in r.stdout and "Preview only" in r.stdout
    assert cb.snapshot() == before


def test_a_certificate_of_neither_key_type_does_not_move_a_pair(cb):
    ec1, rsa1 = setup_pair(cb)
    before = cb.snapshot()
    other = make_cert(NAMES, days_ago(1), key=ed25519.Ed25519PrivateKey.generate())
    r = cb.deploy(other, "match=both")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nothing changed" in r.stderr
    assert cb.snapshot() == before
    assert certhashes(cb, DUAL) == [ec1.thumb, rsa1.thumb]
