"""A running serve takes a batch (`certbind -f`, design section 10) as one change: a small
one through the change log, a large one (more changed keys than the log lists) through a
full read of the bindings."""

import cbe2e
from cbe2e import SLOW, free_port, poll_until, try_thumb

WITHIN = 10 * SLOW  # a guard against a hang, not a timing claim


def run_batch(st, text):
    path = st.dir / "batch.txt"
    path.write_text(text)
    _, out, _ = st.run("-f", path)
    return out


def test_small_batch_is_one_live_change(st, pki):
    a = pki.get("batch-a", "a.batch.test", ["a.batch.test"])
    b = pki.get("batch-b", "b.batch.test", ["b.batch.test"])
    P = free_port()
    st.add_cert(a)
    st.add("hostnameport=a.batch.test:%d" % P, a)
    srv = st.serve().start()
    assert try_thumb("127.0.0.1", P, "b.batch.test") == "alert:TLSV1_UNRECOGNIZED_NAME"
    out = run_batch(st, "add cert %s key=%s\n"
                        "add sslcert hostnameport=b.batch.test:%d certhash=%s\n"
                        "update sslcert hostnameport=a.batch.test:%d certhash=%s\n"
                    % (b.cert_path, b.key_path, P, b.thumb, P, b.thumb))
    assert "certificates 1 added" in out
    assert poll_until(lambda: try_thumb("127.0.0.1", P, "b.batch.test") == b.thumb, WITHIN), \
        srv.log()
    assert try_thumb("127.0.0.1", P, "a.batch.test") == b.thumb
    srv.stop()


def test_large_batch_is_read_whole(st, pki):
    """5000 bindings in one batch: past the change log's 4096 keys serve reads every binding
    again, and serves the first and the last name of the batch."""
    w = pki.get("batch-wild", "*.many.batch.test", ["*.many.batch.test", "seed.batch.test"])
    P = free_port()
    st.add_cert(w)
    st.add("hostnameport=seed.batch.test:%d" % P, w)
    srv = st.serve().start()
    n = 5000
    lines = ["# %d names on one certificate" % n]
    lines += ["add sslcert hostnameport=n%d.many.batch.test:%d certhash=%s" % (i, P, w.thumb)
              for i in range(n)]
    out = run_batch(st, "\n".join(lines) + "\n")
    assert "bindings %d added" % n in out
    for name in ("n0.many.batch.test", "n%d.many.batch.test" % (n - 1)):
        assert poll_until(lambda: try_thumb("127.0.0.1", P, name) == w.thumb, WITHIN), srv.log()
    srv.stop()
