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


def test_a_full_reread_is_built_off_the_loop(st, pki, service_user):
    """SIGHUP re-reads everything with a fresh cache on the thread pool: a linked key that
    blocks in open() (a FIFO) holds up that re-read only; the worker serves meanwhile, and
    the re-read then swaps in with the broken binding failing alone."""
    if os.uname().machine != "x86_64":
        import pytest
        pytest.skip("the syscall number used to see a blocked open is x86_64's")
    fast = pki.get("fast2.test")
    st.add_cert(fast)
    linked = cbe2e.make_cert(st.dir, "linked", "linked.test", ["linked.test"])
    files = st.dir / "linked-files"
    files.mkdir()
    os.chmod(files, 0o755)
    cert_path, key_path = files / "l.pem", files / "l.key"
    cert_path.write_bytes(Path(linked.cert_path).read_bytes())
    key_path.write_bytes(Path(linked.key_path).read_bytes())
    os.chmod(key_path, 0o600)
    os.chown(key_path, service_user.pw_uid, service_user.pw_gid)
    st.run("add", "cert", str(cert_path), "key=%s" % key_path, "link=yes")
    P = free_port()
    st.add("hostnameport=fast2.test:%d" % P, fast)
    st.add("hostnameport=linked.test:%d" % P, linked)
    srv = st.serve(workers=1).start()
    assert cbe2e.try_thumb("127.0.0.1", P, "linked.test") == linked.thumb
    (worker,) = [p for p in srv.children()
                 if Path("/proc/%d/comm" % p).read_text().strip() == "cb-worker-0"]
    saved = key_path.read_bytes()
    alias = st.dir / "fifo-alias2"
    tmp = files / "fifo.tmp"
    os.mkfifo(tmp, 0o600)
    os.chown(tmp, service_user.pw_uid, service_user.pw_gid)
    os.link(tmp, alias)
    os.replace(tmp, key_path)  # linked files are parsed when a re-read is built
    released = False
    try:
        srv.signal(signal.SIGHUP)
        assert poll_until(lambda: blocked_in_open(worker), 10 * SLOW), srv.log()
        for _ in range(5):
            assert cbe2e.try_thumb("127.0.0.1", P, "fast2.test") == fast.thumb, srv.log()
    finally:
        fd = os.open(alias, os.O_WRONLY)  # releases every open() of the FIFO: they read EOF
        os.close(fd)
        released = True
    assert released
    # The re-read went through: the linked binding fails alone, never another certificate.
    assert poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "linked.test") ==
                      "alert:TLSV1_ALERT_INTERNAL_ERROR", 10 * SLOW), srv.log()
    assert cbe2e.try_thumb("127.0.0.1", P, "fast2.test") == fast.thumb
    real = files / "real.tmp"
    real.write_bytes(saved)
    os.chmod(real, 0o600)
    os.chown(real, service_user.pw_uid, service_user.pw_gid)
    os.replace(real, key_path)
    srv.signal(signal.SIGHUP)
    assert poll_until(lambda: cbe2e.try_thumb("127.0.0.1", P, "linked.test") == linked.thumb,
                      10 * SLOW), srv.log()
    log = srv.log()
    srv.stop()
    assert "event=worker_died" not in log
