"""chain-incomplete (the bound chain does not reach a self-signed or system-trusted root)
and weak-key (RSA under 2048 bits, SHA-1 signatures below the root)."""

from cryptography.hazmat.primitives import hashes

from checklib import make_ca, make_cert

CHAIN = "chain-incomplete"
WEAK = "weak-key"


def bound(cb, c, port, chain=True):
    cb.add_cert(c, chain=chain)
    cb.bind("ipport=0.0.0.0:%d" % port, c)


def flagged(cb, code):
    return sorted(x["bindings"][0] for x in cb.findings(code=code))


def test_chain_incomplete(cb):
    ca = make_ca()
    full = make_cert(["full.example.com"], issuer=ca)
    part = make_cert(["part.example.com"], issuer=ca)
    bound(cb, make_cert(["self.example.com"]), 443)  # self-signed: its own root
    bound(cb, full, 8443, chain=True)  # leaf + CA: complete
    assert flagged(cb, CHAIN) == []
    bound(cb, part, 9443, chain=False)  # the CA is not in the imported file
    rc, f = cb.check()
    assert rc == 1
    (x,) = [x for x in f if x["code"] == CHAIN]
    assert x["severity"] == "error" and x["bindings"] == ["ipport=0.0.0.0:9443"]
    assert part.thumbprint in x["message"]
    assert "certbind add cert" in x["message"]


def test_chain_with_intermediate(cb):
    root = make_ca("certbind test root")
    inter = make_ca("certbind test intermediate", issuer=root)
    full = make_cert(["full.example.com"], issuer=inter)
    part = make_cert(["part.example.com"], issuer=inter)
    assert [c.cert.subject for c in full.chain] == [inter.cert.subject, root.cert.subject]
    bound(cb, full, 443)  # leaf, intermediate, root
    assert flagged(cb, CHAIN) == []
    # leaf and intermediate without the (not system-trusted) root
    cb.add_cert(part, pem=part.pem + inter.pem)
    cb.bind("ipport=0.0.0.0:8443", part)
    assert flagged(cb, CHAIN) == ["ipport=0.0.0.0:8443"]


def test_weak_rsa_1024(cb):
    bound(cb, make_cert(["rsa2048.example.com"], key_type="rsa", bits=2048), 443)
    bound(cb, make_cert(["ec.example.com"]), 8443)
    assert flagged(cb, WEAK) == []
    assert cb.check()[0] == 0
    bound(cb, make_cert(["rsa1024.example.com"], key_type="rsa", bits=1024), 9443)
    rc, f = cb.check()
    assert rc == 0  # a warning
    (x,) = [x for x in f if x["code"] == WEAK]
    assert x["severity"] == "warning" and x["bindings"] == ["ipport=0.0.0.0:9443"]
    assert "1024" in x["message"] and "replace it" in x["message"]


def test_weak_sha1_signature_below_the_root(cb):
    ca = make_ca()
    bound(cb, make_cert(["sha256.example.com"], issuer=ca), 443)
    # a SHA-1 self-signed root is not what clients check: its leaf signed with SHA-256 is fine
    sha1_root = make_cert((), cn="certbind SHA-1 root", ca=True, hash_alg=hashes.SHA1())
    bound(cb, make_cert(["under-sha1-root.example.com"], issuer=sha1_root), 8443)
    assert flagged(cb, WEAK) == []
    sha1 = make_cert(["sha1.example.com"], issuer=ca, hash_alg=hashes.SHA1())
    bound(cb, sha1, 9443)
    rc, f = cb.check()
    assert rc == 0
    (x,) = [x for x in f if x["code"] == WEAK]
    assert x["bindings"] == ["ipport=0.0.0.0:9443"]
    assert sha1.thumbprint in x["message"] and "SHA-1" in x["message"]
