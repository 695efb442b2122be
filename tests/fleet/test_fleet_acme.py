"""ACME in a fleet (design section 8) against a real Pebble: two nodes share one etcd store
and one managed binding; exactly one order reaches Pebble (the node that orders holds the
binding's etcd lease lock), the challenge material goes through the store so either node
answers TLS-ALPN-01, both nodes serve the issued certificate, and restarting both orders
nothing again.

Pebble's VA validates on the binding's port at the address the mock DNS gives the name:
node2's, so when node1 orders, node2 answers the validation from the replicated challenge.
"""

import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from nodes import EtcdCluster, Node, make_store_key, wait_for

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "acme_client")]

import pebblekit  # noqa: E402

import cbe2e  # noqa: E402
from cbe2e import SLOW, free_port, make_cert  # noqa: E402

ISSUE_WITHIN = 120 * SLOW
NAME = "shop.fleet.test"


@pytest.fixture(scope="module")
def world(request):
    for tool in pebblekit.tools_missing():
        pytest.skip("%s is not installed" % tool)
    d = Path(tempfile.mkdtemp(prefix="certbind-fleet-acme-"))
    os.chmod(d, 0o755)
    tls_dir = d / "tls"
    tls_dir.mkdir(mode=0o755)
    tls = pebblekit.TLSFiles(tls_dir)
    challsrv = pebblekit.ChallTestSrv(d, tlsalpn=False)
    port = free_port()
    pebble = pebblekit.Pebble(d / "pebble", tls, challsrv, tls_port=port)
    challsrv.add_a(NAME, ["127.0.0.12"])
    etcd = EtcdCluster(d, members=1).start()
    key = make_store_key(d)
    url = etcd.url("acme%d" % os.getpid())
    nodes = [Node(d, "node%d" % i, url, key, "127.0.0.1%d" % i) for i in (1, 2)]
    w = {"dir": d, "tls": tls, "pebble": pebble, "challsrv": challsrv, "etcd": etcd,
         "nodes": nodes, "port": port, "url": url}
    try:
        yield w
    finally:
        rep = getattr(request.node, "rep_call", None)
        for n in nodes:
            for srv in n.servers:
                print("---- %s serve log ----\n%s" % (n.name, srv.log()[-6000:]))
            n.cleanup()
        print("---- pebble ----\n%s" % pebble.log_text()[-3000:])
        etcd.stop()
        pebble.stop()
        challsrv.close()
        shutil.rmtree(d, ignore_errors=True)


def show_acme(node):
    _, out, _ = node.local("--json", "show", "acme")
    return json.loads(out)


def state_of(node, key):
    for b in show_acme(node)["bindings"]:
        if b["key"] == key:
            return b
    return None


def valid_on_both(world, key):
    """Waits until both replicas hold binding key valid with one certificate; its state."""
    def valid_everywhere():
        s = [state_of(n, key) for n in world["nodes"]]
        return s if all(x and x["status"] == "valid" for x in s) else None
    s1, s2 = wait_for(valid_everywhere, ISSUE_WITHIN, "%s valid on both nodes" % key,
                      interval=0.2)
    assert s1["certhash"] == s2["certhash"] and s1["certhash"], (s1, s2)
    return s1


def test_one_order_for_the_fleet_and_both_nodes_serve_it(world):
    n1, n2 = world["nodes"]
    port = world["port"]
    key = "hostnameport=%s:%d" % (NAME, port)
    default = make_cert(world["dir"], "default", "default.fleet.test")
    n1.add_cert(default)
    n1.add("ipport=0.0.0.0:%d" % port, default)
    # Both nodes listen before the binding is managed: either may take the order.
    for n in (n1, n2):
        n.start_serve()
    n1.run("set", "acme", "directory=%s" % world["pebble"].directory, "email=ops@fleet.test",
           "agreetos=yes", "cafile=%s" % world["tls"].cafile)
    n1.run("add", "sslcert", key, "acme=enable")
    # Both replicas see it valid, with the same certificate, and both nodes serve it.
    s1 = valid_on_both(world, key)
    for n in (n1, n2):
        n.wait_serves(port, NAME, s1["certhash"])
    # Exactly one order, by one node; the other one found the lock held, or nothing due.
    assert world["pebble"].orders() == 1, world["pebble"].log_text()[-3000:]
    issued = [n for n in (n1, n2) if n.srv.lines("acme_issued")]
    assert len(issued) == 1, [n.srv.log() for n in (n1, n2)]
    # Restarting both nodes orders nothing again: they see the certificate in their replica.
    for n in (n1, n2):
        n.srv.stop()
    for n in (n1, n2):
        srv = n.start_serve()
        srv.wait_log(r"event=fleet_synced\b", 20 * SLOW)
    for n in (n1, n2):
        n.wait_serves(port, NAME, s1["certhash"])
    assert world["pebble"].orders() == 1
    for n in (n1, n2):
        assert not n.srv.lines("acme_order"), n.srv.log()


def manager_pid(node):
    kids = [p for p in node.srv.children()
            if Path("/proc/%d/comm" % p).read_text().strip() == "cb-manager"]
    assert len(kids) == 1, kids
    return kids[0]


def alpn_refused(node, port, name):
    """node's workers refuse acme-tls/1 for name: no challenge for it there (yet)."""
    ctx = cbe2e.client_ctx(alpn=["acme-tls/1"])
    return cbe2e.handshake_error(node.address, port, sni=name, ctx=ctx) is not None


def test_the_ordering_node_waits_until_the_other_serves_the_challenge(world):
    """Fault injection: node2's manager (which applies etcd's changes to its replica) is
    stopped before node1 orders a name that the CA reaches only at node2. Node1 must not
    tell the CA until node2 serves the challenge: it waits, saying for which node; node2,
    resumed, applies the challenge, asks its own workers for it, and says so through its
    presence key; then the validation at node2 succeeds and one order is enough. Runs
    after the test above, in its world (ACME set up, both nodes serving)."""
    n1, n2 = world["nodes"]
    port = world["port"]
    name = "late.fleet.test"
    key = "hostnameport=%s:%d" % (name, port)
    world["challsrv"].add_a(name, [n2.address])
    orders = world["pebble"].orders()
    # node2 is present: its key in etcd says up to which revision it serves challenges.
    line = n2.srv.wait_log(r"event=fleet_presence node=\S+", 20 * SLOW)
    node2 = re.search(r"node=(\S+)", line).group(1)
    mark1, mark2 = len(n1.srv.log()), len(n2.srv.log())
    manager = manager_pid(n2)
    os.kill(manager, signal.SIGSTOP)
    try:
        n1.run("add", "sslcert", key, "acme=enable")
        wait = n1.srv.wait_log(r"event=acme_nodes_wait name=%s " % re.escape(name),
                               ISSUE_WITHIN, after=mark1)
        # The premise: node2 cannot answer the CA now, so telling the CA would fail.
        assert alpn_refused(n2, port, name)
    finally:
        os.kill(manager, signal.SIGCONT)
    assert re.search(r"\bnodes=%s\b" % re.escape(node2), wait), (node2, wait)
    s1 = valid_on_both(world, key)
    n2.wait_serves(port, name, s1["certhash"])
    assert world["pebble"].orders() == orders + 1, world["pebble"].log_text()[-3000:]
    log1 = n1.srv.log()[mark1:]
    assert "event=acme_nodes_ready name=%s" % name in log1, log1
    assert "event=acme_nodes_lagging" not in log1, log1
    assert "event=acme_failed" not in log1, log1
    assert re.search(r"event=fleet_challenges_served node=\S+ challenges=1",
                     n2.srv.log()[mark2:]), n2.srv.log()[mark2:]
