"""`serve --iplisten ADDR` (design section 8): HTTP.sys's IP listen list.

Wildcard, SNI and central store ports listen only on the listed addresses, so several
serve processes share one port on one host, each on its own address; IP bindings on
other addresses still listen on their own address; resolution is unchanged.
"""

import os
import socket
import tempfile
from pathlib import Path

import pytest

from cbe2e import ERR, SERVICE_USER, State, TLSConn, free_port


def new_state(workdir, name, service_user):
    folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=workdir))
    os.chmod(folder, 0o755)
    st = State(folder)
    if service_user is not None:
        st.run("set", "user=%s" % SERVICE_USER)
    return st


@pytest.fixture
def states(request, workdir, service_user):
    made = []

    def make(name):
        s = new_state(workdir, name, service_user)
        made.append(s)
        return s

    yield make
    rep = getattr(request.node, "rep_call", None)
    for s in made:
        if rep is not None and rep.failed:
            for srv in s.servers:
                print("---- serve log (%s) ----\n%s" % (srv.log_path, srv.log()[-4000:]))
        s.cleanup()


def refused(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


def test_three_nodes_share_a_port_each_on_its_address(states, pki):
    port = free_port()
    nodes = []
    for i in (1, 2, 3):
        st = states("node%d" % i)
        cert = pki.get("iplisten-node%d" % i)
        st.add_cert(cert)
        st.add("ipport=0.0.0.0:%d" % port, cert)
        st.add("hostnameport=n.test:%d" % port, cert)
        srv = st.serve(extra_args=["--iplisten", "127.0.0.1%d" % i]).start()
        assert srv.wait_log(r"event=start\b.*iplisten=127\.0\.0\.1%d\b" % i, 5)
        nodes.append((st, cert, srv))
    # Each address answers with its own node's certificate, every time (a shared wildcard
    # socket would spread connections across the three processes).
    for i, (_, cert, _) in enumerate(nodes, 1):
        for sni in (None, "n.test") * 5:
            with TLSConn("127.0.0.1%d" % i, port, sni=sni) as c:
                assert c.peer_thumb == cert.thumb
    # No node listens on the wildcard address.
    assert refused("127.0.0.14", port)
    for st, _, srv in nodes:
        srv.stop()
        assert "EADDRINUSE" not in srv.log() and "in use" not in srv.log()


def test_ip_binding_outside_the_list_listens_on_its_own_address(states, pki):
    st = states("outside")
    port = free_port()
    wild, ip = pki.get("iplisten-wild"), pki.get("iplisten-ip")
    st.add_cert(wild)
    st.add_cert(ip)
    st.add("ipport=0.0.0.0:%d" % port, wild)
    st.add("ipport=127.0.0.21:%d" % port, ip)
    st.add("ipport=127.0.0.11:%d" % port, ip)
    srv = st.serve(workers=2, extra_args=["--iplisten=127.0.0.11", "--iplisten", "127.0.0.12"]).start()
    with TLSConn("127.0.0.21", port) as c:
        assert c.peer_thumb == ip.thumb
    # 127.0.0.11 is listed and has its own IP binding: resolution picks the IP binding.
    with TLSConn("127.0.0.11", port) as c:
        assert c.peer_thumb == ip.thumb
    # 127.0.0.12 is listed: the wildcard binding answers there.
    with TLSConn("127.0.0.12", port, sni="x.test") as c:
        assert c.peer_thumb == wild.thumb
    assert refused("127.0.0.13", port)
    srv.stop()


def test_ipv6_listen_address(states, pki):
    st = states("v6")
    port = free_port()
    c6 = pki.get("iplisten-v6")
    st.add_cert(c6)
    st.add("ipport=[::]:%d" % port, c6)
    srv = st.serve(extra_args=["--iplisten", "::1"]).start()
    with TLSConn("::1", port) as c:
        assert c.peer_thumb == c6.thumb
    assert refused("127.0.0.1", port)
    srv.stop()


def test_changes_follow_the_list(states, pki):
    """A binding on a new port, added while serving, listens on the listed address only."""
    st = states("live")
    p1, p2 = free_port(), free_port()
    cert = pki.get("iplisten-live")
    st.add_cert(cert)
    st.add("ipport=0.0.0.0:%d" % p1, cert)
    srv = st.serve(extra_args=["--iplisten", "127.0.0.12"]).start()
    mark = len(srv.log())
    st.add("hostnameport=live.test:%d" % p2, cert)
    srv.wait_log(r"event=listen\b.*addr=127\.0\.0\.12:%d\b" % p2, 10, after=mark)
    with TLSConn("127.0.0.12", p2, sni="live.test") as c:
        assert c.peer_thumb == cert.thumb
    assert refused("127.0.0.1", p2)
    srv.stop()


@pytest.mark.parametrize("value", ["foo", "10.0.0.1:443", "[10.0.0.1]", "300.1.1.1", "::1]", "",
                                   "fe80::1%eth0"])
def test_bad_iplisten_is_refused(states, value):
    st = states("bad")
    rc, out, err = st.run("serve", "--iplisten=" + value, check=False)
    assert rc == 2, (rc, err)
    assert err.startswith(ERR) and "--iplisten" in err and err.count("\n") == 1, err
    assert out == ""
