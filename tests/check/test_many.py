"""check over more certificates in use than one key-access test takes (CHECK_PROBE_BATCH,
4096, in src/check/check.c): every certificate is tested, and a key-unusable finding names
the certificate whose key is broken, whichever batch it fell in."""

import os
import re

from checklib import make_cert, new_key

KEY = "key-unusable"
N = 4100  # two batches: 4096 and 4


def replace_file(path, data):
    """Rewrites a stored key in place: same owner and mode, other bytes."""
    st = os.stat(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, st.st_mode & 0o7777)


def test_key_unusable_in_either_batch(cb):
    shared = new_key()
    certs = [make_cert(["s%d.example.com" % i], key=shared) for i in range(N)]
    default = make_cert(["default.example.com"])
    lines = ["add cert %s\n" % cb.write("default.pem", default.pem + default.key_pem),
             "add sslcert ipport=0.0.0.0:443 certhash=%s\n" % default.thumbprint]
    for i, c in enumerate(certs):
        f = cb.write("m%d.pem" % i, c.pem + c.key_pem)
        lines.append("add cert %s\n" % f)
        lines.append("add sslcert hostnameport=s%d.example.com:443 certhash=%s\n"
                     % (i, c.thumbprint))
    cb.ok("-f", cb.write("batch.txt", "".join(lines).encode()))
    assert cb.check() == (0, [])  # the nearest configuration without the problem
    # check tests the certificates in thumbprint order: break the first one's key and the
    # last one's (the first and the second batch) with another key.
    by_thumb = sorted(certs, key=lambda c: c.thumbprint)
    broken = [by_thumb[0], by_thumb[-1]]
    other = make_cert(["other.example.com"]).key_pem
    for c in broken:
        replace_file(cb.state / "keys" / ("%s.key" % c.thumbprint), other)
    rc, f = cb.check()
    assert rc == 1
    got = sorted((re.search(r"certificate ([0-9A-F]{40})", x["message"]).group(1),
                  x["bindings"]) for x in f if x["code"] == KEY)
    want = sorted((c.thumbprint, ["hostnameport=%s:443" % c.cert.subject.rfc4514_string()[3:]])
                  for c in broken)
    assert got == want, f
    assert [x for x in f if x["code"] != KEY] == []
