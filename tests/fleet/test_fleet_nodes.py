"""Fleet nodes (design section 8), end to end: three `certbind serve` on 127.0.0.11-13
(--iplisten) share one etcd store; a change made through the CLI anywhere is served by
all three; etcd down: nodes serve their replica, log it once, and catch up when it is back.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/fleet
"""

import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from nodes import EtcdCluster, Node, make_store_key, wait_for

import cbe2e
from cbe2e import ERR, SLOW, free_port, make_cert

CHANGE_WITHIN = 10 * SLOW  # generous deadline; the bench measures the real figure
ADDRS = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]


def print_logs(request, nodes, etcd=None):
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    for n in nodes:
        for srv in n.servers:
            print("---- %s serve log ----\n%s" % (n.name, srv.log()[-5000:]))
    if etcd is not None:
        for m in etcd.members:
            print("---- etcd %s ----\n%s" % (m.name, m.log_path.read_text(errors="replace")[-2000:]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="module")
def folder():
    d = Path(tempfile.mkdtemp(prefix="certbind-fleet-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Fleet:
    def __init__(self, folder, members, prefix):
        self.dir = folder
        self.etcd = EtcdCluster(folder, members=members).start()
        self.key = make_store_key(folder, "store-%s.key" % prefix)
        self.url = self.etcd.url(prefix)
        self.prefix = prefix
        self.nodes = [Node(folder, "node%d" % (i + 1), self.url, self.key, a)
                      for i, a in enumerate(ADDRS)]
        # A fourth folder: an administrator's CLI that serves nothing.
        self.admin = Node(folder, "admin", self.url, self.key, "127.0.0.1")
        self.port = free_port()
        self.certs = {}

    def cert(self, stem):
        if stem not in self.certs:
            self.certs[stem] = make_cert(self.dir, stem, "www.fleet.test", ["www.fleet.test"])
        return self.certs[stem]

    def assert_all_serve(self, thumb, sni="www.fleet.test", nodes=None):
        for n in nodes or self.nodes:
            n.wait_serves(self.port, sni, thumb, CHANGE_WITHIN)

    def stop(self):
        for n in self.nodes + [self.admin]:
            n.cleanup()
        self.etcd.stop()


@pytest.fixture(scope="module")
def fleet(request, folder):
    f = Fleet(folder, 1, "t%d" % os.getpid())
    first = f.cert("first")
    f.admin.add_cert(first)
    f.admin.add("hostnameport=www.fleet.test:%d" % f.port, first)
    f.admin.add("ipport=0.0.0.0:%d" % f.port, first)
    for n in f.nodes:
        n.start_serve()
    yield f
    f.stop()


@pytest.fixture
def logs_on_failure(request, fleet):
    yield
    print_logs(request, fleet.nodes + [fleet.admin], fleet.etcd)


def test_every_node_serves_the_fleet_store(fleet, logs_on_failure):
    fleet.assert_all_serve(fleet.certs["first"].thumb)
    fleet.assert_all_serve(fleet.certs["first"].thumb, sni=None)
    for n in fleet.nodes:
        assert n.srv.lines("fleet_synced"), n.srv.log()


@pytest.mark.parametrize("via", ["admin", "node2"])
def test_a_change_is_served_by_all_three(fleet, via, logs_on_failure):
    cli = fleet.admin if via == "admin" else fleet.nodes[1]
    new = fleet.cert("change-" + via)
    cli.add_cert(new)
    cli.update("hostnameport=www.fleet.test:%d" % fleet.port, certhash=new.thumb)
    fleet.assert_all_serve(new.thumb)
    # The no-SNI wildcard binding did not move.
    fleet.assert_all_serve(fleet.certs["first"].thumb, sni=None)


def test_etcd_holds_no_private_key_in_clear(fleet, logs_on_failure):
    dump = fleet.etcd.dump(fleet.prefix)
    assert b"/cert/" in dump  # the certificates are there
    assert b"PRIVATE KEY" not in dump
    for c in fleet.certs.values():
        key_pem = c.key_path.read_bytes()
        body = b"".join(l for l in key_pem.splitlines() if not l.startswith(b"-----"))
        assert body[:40] not in dump.replace(b"\n", b"")
        der = cbe2e.serialization.load_pem_private_key(key_pem, None).private_bytes(
            cbe2e.serialization.Encoding.DER, cbe2e.serialization.PrivateFormat.PKCS8,
            cbe2e.serialization.NoEncryption())
        assert der[-32:] not in dump


def test_etcd_down_then_back(fleet, logs_on_failure):
    thumb = fleet.nodes[0].served_thumb(fleet.port, "www.fleet.test")
    marks = [len(n.srv.log()) for n in fleet.nodes]
    fleet.etcd.stop()
    for n, mark in zip(fleet.nodes, marks):
        line = n.srv.wait_log(r"event=fleet_unreachable\b", 30 * SLOW, after=mark)
        assert "serving=replica" in line and "age=" in line, line
    # They keep serving, through several retries, and say it once.
    for n in fleet.nodes:
        assert n.served_thumb(fleet.port, "www.fleet.test") == thumb
    # A command cannot change the fleet meanwhile, and says why.
    rc, out, err = fleet.admin.run("delete", "sslcert", "ipport=0.0.0.0:%d" % fleet.port,
                                   check=False)
    last = err.splitlines()[-1]
    assert rc == 1 and last.startswith(ERR) and "etcd" in last and "nothing changed" in last, err
    # A node restarted while etcd is down serves its replica and says so.
    n3 = fleet.nodes[2]
    n3.srv.stop()
    srv = n3.start_serve()
    line = srv.wait_log(r"event=fleet_unreachable\b", 30 * SLOW)
    assert "serving=replica" in line, line
    assert n3.served_thumb(fleet.port, "www.fleet.test") == thumb
    for n, mark in zip(fleet.nodes[:2], marks):
        assert len(re.findall(r"event=fleet_unreachable\b", n.srv.log()[mark:])) == 1, n.srv.log()
    # etcd is back: every node reconnects, and a change made now reaches all three.
    marks = [len(n.srv.log()) for n in fleet.nodes]
    fleet.etcd.restart()
    for n, mark in zip(fleet.nodes, marks):
        n.srv.wait_log(r"event=fleet_reconnected\b.*revision=\d+", 60 * SLOW, after=mark)
    new = fleet.cert("after-restart")
    fleet.admin.add_cert(new)
    fleet.admin.update("hostnameport=www.fleet.test:%d" % fleet.port, certhash=new.thumb)
    fleet.assert_all_serve(new.thumb)


def findings(node):
    rc, out, err = node.run("--json", "check", check=False)
    assert rc in (0, 1), err
    return {f["code"]: f for f in cbe2e.json.loads(out)["findings"]}


def test_check_reports_a_stale_replica(fleet, logs_on_failure):
    n1 = fleet.nodes[0]
    assert "fleet-replica-stale" not in findings(n1)
    fleet.etcd.stop()
    try:
        # The replica last heard from etcd 10 minutes ago (as if etcd had been away since).
        db = sqlite3.connect(str(n1.state / "certbind.db"))
        with db:
            db.execute("UPDATE fleet_state SET synced_at = synced_at - 600")
        db.close()
        f = findings(n1)
        assert "fleet-replica-stale" in f, f
        x = f["fleet-replica-stale"]
        assert x["severity"] == "warning", x
        assert re.search(r"last heard from etcd (6\d\d) s ago", x["message"]), x
    finally:
        fleet.etcd.restart()
    # etcd answers: the command syncs first, and the replica is fresh again.
    assert "fleet-replica-stale" not in findings(n1)


def test_sigterm_ends_the_follow_thread_promptly(fleet, logs_on_failure):
    n = fleet.nodes[1]
    t = time.monotonic()
    n.srv.stop(timeout=10 * SLOW)
    assert "event=stopped" in n.srv.log()
    srv = n.start_serve()
    assert srv.wait_log(r"event=fleet_synced\b", 20 * SLOW)
    n.wait_serves(fleet.port, "www.fleet.test",
                  fleet.nodes[0].served_thumb(fleet.port, "www.fleet.test"))
    assert time.monotonic() - t < 60 * SLOW


def test_a_new_node_with_etcd_down_and_no_replica_refuses_to_start(fleet, folder,
                                                                    logs_on_failure):
    fresh = Node(folder, "fresh", fleet.url, fleet.key, "127.0.0.14")
    fleet.etcd.stop()
    try:
        srv = fresh.serve(extra_args=fresh.fleet_args() + ["--iplisten", fresh.address])
        srv.start(wait_ready=False)
        rc = srv.wait(60 * SLOW)
        log = srv.log()
        assert rc == 1, log
        assert ERR in log and "no replica" in log and "etcd" in log, log
    finally:
        fleet.etcd.restart()
        fresh.cleanup()


@pytest.fixture(scope="module")
def fleet3(request, folder):
    f = Fleet(folder, 3, "c%d" % os.getpid())
    first = f.cert("c-first")
    f.admin.add_cert(first)
    f.admin.add("hostnameport=www.fleet.test:%d" % f.port, first)
    for n in f.nodes:
        n.start_serve()
    yield f
    print_logs(request, f.nodes + [f.admin], f.etcd)
    f.stop()


def test_three_member_cluster_leader_stopped(fleet3):
    f = fleet3
    f.assert_all_serve(f.certs["c-first"].thumb)
    leader = wait_for(f.etcd.leader, 20 * SLOW, "an etcd leader")
    f.etcd.stop_member(leader)
    wait_for(f.etcd.leader, 20 * SLOW, "a new etcd leader")
    new = f.cert("c-after-leader")
    # The CLI fails over to another endpoint.
    f.admin.add_cert(new)
    f.admin.update("hostnameport=www.fleet.test:%d" % f.port, certhash=new.thumb)
    f.assert_all_serve(new.thumb)
    f.etcd.restart_member(leader)


def test_a_session_resumes_on_another_node(fleet, logs_on_failure):
    """Ticket keys live in the fleet store: a ticket one node issued is accepted by another."""
    key = "hostnameport=www.fleet.test:%d" % fleet.port
    fleet.admin.update(key, enablesessionticket="enable")
    thumb = fleet.nodes[0].served_thumb(fleet.port, "www.fleet.test")
    fleet.assert_all_serve(thumb)

    def resumed_elsewhere():
        # TLS 1.2: the ticket comes within the handshake (no application data needed).
        v = cbe2e.ssl.TLSVersion.TLSv1_2
        ctx = cbe2e.client_ctx(minv=v, maxv=v)
        with cbe2e.TLSConn(fleet.nodes[0].address, fleet.port, sni="www.fleet.test",
                           ctx=ctx) as c:
            session = c.obj.session
        if session is None or not session.has_ticket:
            return False
        with cbe2e.TLSConn(fleet.nodes[1].address, fleet.port, sni="www.fleet.test", ctx=ctx,
                           session=session) as c2:
            return c2.obj.session_reused
    assert wait_for(resumed_elsewhere, CHANGE_WITHIN, "a session resumed on node2", interval=0.1)
