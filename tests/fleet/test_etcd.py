"""src/etcd against a real etcd, through tests/fleet/etcd_probe.c: paging, txn compares,
leases, the watch stream (events, compaction, stop), URL refusals, and a three-member cluster
whose leader is stopped while requests and a watch go on (failover across endpoints)."""

import subprocess
import time

import pytest

import fleetlib


def probe(*args, timeout=120):
    p = subprocess.run([fleetlib.PROBE] + [str(a) for a in args], capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def test_kv(etcd):
    rc, out = probe("kv", etcd.url("probe-kv"))
    assert rc == 0, out
    assert "range n=1203" in out and "txn ok, stale refused" in out


def test_lease(etcd):
    rc, out = probe("lease", etcd.url("probe-lease"))
    assert rc == 0, out
    assert "lease ok" in out


def start_watch(url, n, start=0):
    p = subprocess.Popen([fleetlib.PROBE, "watch", url, str(n), str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = p.stdout.readline().decode()
    assert first.startswith("watching from"), first
    return p


def test_watch_events_in_order(etcd):
    w = start_watch(etcd.url("probe-watch"), 3)
    etcd.ctl("put", "probe-watch/a", "1")
    etcd.ctl("put", "probe-watch/b", "2")
    etcd.ctl("put", "other/c", "x")  # outside the prefix: not seen
    etcd.ctl("del", "probe-watch/a")
    out, _ = w.communicate(timeout=60)
    out = out.decode()
    assert w.returncode == 0, out
    evs = [l.split() for l in out.splitlines() if l.startswith("ev ")]
    assert [(e[1], e[2]) for e in evs] == [("put", "probe-watch/a"), ("put", "probe-watch/b"),
                                           ("delete", "probe-watch/a")], out


def test_watch_from_old_revision_replays(etcd):
    etcd.ctl("put", "probe-replay/a", "1")
    rev = etcd.revision()
    etcd.ctl("put", "probe-replay/b", "2")
    rc, out = probe("watch", etcd.url("probe-replay"), 2, rev)
    assert rc == 0, out
    assert "ev put probe-replay/a 1 %d" % rev in out and "ev put probe-replay/b 2" in out


def test_compacted(own_etcd):
    own_etcd.ctl("put", "probe-c/a", "1")
    old = own_etcd.revision()
    own_etcd.ctl("put", "probe-c/a", "2")
    own_etcd.ctl("compact", str(own_etcd.revision()))
    rc, out = probe("compacted", own_etcd.url("probe-c"), old)
    assert rc == 0, out


def test_stop(etcd):
    rc, out = probe("stop", etcd.url("probe-stop"))
    assert rc == 0 and "stop ok" in out, out


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:2379/x", "etcd://"),
    ("etcd://127.0.0.1:2379", "prefix"),
    ("etcd://127.0.0.1:2379/", "prefix"),
    ("etcd://127.0.0.1/x", "HOST:PORT"),
    ("etcd://127.0.0.1:0/x", "out of range"),
    ("etcd://127.0.0.1:99999/x", "out of range"),
    ("etcd://127.0.0.1:2379,/x", "endpoint"),
    ("etcd://:2379/x", "no host"),
    ("etcd://127.0.0.1:2379/a b", "prefix"),
])
def test_bad_url(url, why):
    rc, out = probe("kv", url)
    assert rc == 2 and why in out, out


def test_unreachable(tmp):
    dead = "127.0.0.1:%d,127.0.0.1:%d" % (fleetlib.free_port(), fleetlib.free_port())
    rc, out = probe("kv", "etcd://%s/x" % dead)
    assert rc == 1 and "etcd unreachable at " + dead in out, out


def test_cluster_leader_stopped():
    """Three members; the client lists all three. The leader is stopped while a loop of
    txn + range runs and a watch is open: both go on through the other members."""
    e = fleetlib.Etcd(3)
    try:
        url = e.url("probe-cluster")
        w = start_watch(url, 2)
        e.ctl("put", "probe-cluster/before", "1")
        loop = subprocess.Popen([fleetlib.PROBE, "loop", e.url("probe-loop"), "6"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        leader = e.leader()
        leader.stop()
        survivors = [m for m in e.members if m is not leader]
        fleetlib.wait_for(lambda: e.ctl("put", "probe-cluster/after", "2",
                                        check=False).returncode == 0,
                          "the two members left to elect a leader and take a write")
        out, _ = loop.communicate(timeout=120)
        out = out.decode()
        assert loop.returncode == 0, out
        # Every request went through: each waits out the election on the other members.
        last = out.strip().splitlines()[-1]
        assert last.startswith("loop ok=") and last.endswith(" failed=0"), out
        assert int(last.split("ok=")[1].split()[0]) > 0, out
        wout, _ = w.communicate(timeout=60)
        wout = wout.decode()
        assert w.returncode == 0, wout
        assert "ev put probe-cluster/before" in wout and "ev put probe-cluster/after" in wout, wout
        # The survivors hold what was written.
        got = e.ctl("get", "probe-cluster/after", member=survivors[0]).stdout.decode()
        assert "probe-cluster/after" in got
    finally:
        e.close()
