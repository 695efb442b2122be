"""A certificate is parsed on first use off the worker's event loop (libuv's thread pool):
while one handshake waits for its certificate to be read, the same worker keeps serving
every other binding. The key file is made a FIFO, so the parse blocks in open() until the
test opens the other end; the paused handshake then fails cleanly (a FIFO is no key), and
a SIGHUP after the key is put back serves it."""

import os
import signal
import threading
from pathlib import Path

import cbe2e
from cbe2e import SLOW, free_port, poll_until

OPENAT = "257"  # x86_64 syscall number, as /proc/PID/task/TID/syscall shows it


def blocked_in_open(pid):
    """Whether a thread of process pid is blocked in openat()."""
    for task in Path("/proc/%d/task" % pid).iterdir():
        try:
            if (task / "syscall").read_text().split()[0] == OPENAT:
                return True
        except (OSError, IndexError):
            continue
    return False


def test_a_slow_first_parse_does_not_stall_the_worker(st, pki, service_user):
    if os.uname().machine != "x86_64":
        import pytest
        pytest.skip("the syscall number used to see a blocked open is x86_64's")
    fast = pki.get("fast.test")
    slow = cbe2e.make_cert(st.dir, "slowparse", "slow.test", ["slow.test"])
    st.add_cert(fast)
    st.add_cert(slow)
    P = free_port()
    st.add("hostnameport=fast.test:%d" % P, fast)
    st.add("hostnameport=slow.test:%d" % P, slow)
    key = st.key_file(slow.thumb)
    saved = key.read_bytes()
    stat = key.stat()
    key.unlink()
    os.mkfifo(key, 0o600)
    os.chown(key, stat.st_uid, stat.st_gid)
    alias = st.dir / "fifo-alias"
    os.link(key, alias)  # to reach the FIFO once the real key is back at its path
    srv = st.serve(workers=1).start()
    (worker,) = [p for p in srv.children()
                 if Path("/proc/%d/comm" % p).read_text().strip() == "cb-worker-0"]
    result = {}

    def slow_client():
        result["slow"] = cbe2e.try_thumb("127.0.0.1", P, "slow.test")

    t = threading.Thread(target=slow_client, daemon=True)
    t.start()
    released = False
    try:
        # The worker saw the slow ClientHello: its parse is blocked opening the key...
        assert poll_until(lambda: blocked_in_open(worker), 10 * SLOW), srv.log()
        # ...and the same worker serves the other binding all the while.
        for _ in range(5):
            assert cbe2e.try_thumb("127.0.0.1", P, "fast.test") == fast.thumb, srv.log()
        assert t.is_alive(), result
    finally:
        # The real key back at its path, then the blocked open released.
        tmp = key.with_suffix(".tmp")
        tmp.write_bytes(saved)
        os.chown(tmp, stat.st_uid, stat.st_gid)
        os.chmod(tmp, 0o600)
        os.replace(tmp, key)
        fd = os.open(alias, os.O_WRONLY)
        os.close(fd)
        released = True
    t.join(10 * SLOW)
    assert released and not t.is_alive()
    # The paused handshake went on and failed cleanly: a FIFO is no key. Never another
    # binding's certificate.
    assert result["slow"] == "alert:TLSV1_ALERT_INTERNAL_ERROR", (result, srv.log())
    srv.signal(signal.SIGHUP)
    assert poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "slow.test") == slow.thumb,
                      10 * SLOW), srv.log()
    log = srv.log()
    srv.stop()
    assert "event=worker_died" not in log
