"""Keys and control: a key file others can read is refused (check names the chmod, the binding
fails its handshakes with internal_error), a state folder open to others stops every command,
and serve never runs as root."""

import json
import os
import pwd
import signal
import ssl

import pytest

from conftest import SERVICE_USER, free_port, peer_der, proc_status, tls_connect

CAP_NET_BIND_SERVICE = 10


def key_path(store, cert):
    for c in json.loads(store.ok("show", "cert", "--json"))["certs"]:
        if c["thumbprint"] == cert.thumbprint:
            return c["key_path"]
    raise AssertionError("no certificate %s" % cert.thumbprint)


def findings(store):
    rc, out, err = store.run("check", "--json")
    return rc, json.loads(out)["findings"], err


def reload_and_wait(srv):
    n = len(srv.events("snapshot"))
    os.kill(srv.proc.pid, signal.SIGHUP)
    srv.wait_event("snapshot", count=n + 1)  # worker 0 logs it; these servers have one


def test_key_readable_by_others_is_refused(store, serve):
    port_a, port_b = free_port(), free_port()
    a = store.cert("a.test")
    b = store.cert("b.test")
    store.bind("ipport=127.0.0.1:%d" % port_a, a)
    store.bind("ipport=127.0.0.1:%d" % port_b, b)
    key = key_path(store, a)
    assert os.stat(key).st_mode & 0o077 == 0, "a stored key is open to others"
    srv = serve(workers=1)
    with tls_connect("127.0.0.1", port_a) as s:
        assert peer_der(s) == a.der

    os.chmod(key, 0o644)
    rc, found, _ = findings(store)
    assert rc == 1
    bad = [f for f in found if f["code"] == "key-unusable"]
    assert bad, found
    assert "chmod 600" in bad[0]["message"] and key in bad[0]["message"], bad[0]
    assert bad[0]["severity"] == "error"
    assert "ipport=127.0.0.1:%d" % port_a in bad[0]["bindings"], bad[0]
    assert not any("ipport=127.0.0.1:%d" % port_b in f["bindings"] for f in bad)
    # serve re-reads keys on SIGHUP: the binding now fails, with no other certificate.
    reload_and_wait(srv)
    with pytest.raises(ssl.SSLError) as e:
        tls_connect("127.0.0.1", port_a).close()
    assert "INTERNAL_ERROR" in str(e.value).upper(), e.value
    broken = srv.wait_event("binding_broken",
                            pred=lambda ev: ev["binding"] == "ipport=127.0.0.1:%d" % port_a)
    assert "chmod 600" in broken[-1]["reason"], broken[-1]
    with tls_connect("127.0.0.1", port_b) as s:  # the other binding is untouched
        assert peer_der(s) == b.der

    # Writable by its group: refused too, with the chmod that fixes that.
    os.chmod(key, 0o660)
    rc, found, _ = findings(store)
    bad = [f for f in found if f["code"] == "key-unusable"]
    assert rc == 1 and bad and "chmod g-wx" in bad[0]["message"], found

    # Fixed: served again after a reload.
    os.chmod(key, 0o600)
    rc, found, _ = findings(store)
    assert not [f for f in found if f["code"] == "key-unusable"], found
    reload_and_wait(srv)
    with tls_connect("127.0.0.1", port_a) as s:
        assert peer_der(s) == a.der


def test_state_folder_open_to_others_stops_every_command(store, work):
    a = store.cert("a.test")
    b_cert = store.cert("b.test")
    port = free_port()
    key = "ipport=127.0.0.1:%d" % port
    store.bind(key, a)
    commands = [
        ("show", "cert"), ("show", "sslcert"), ("show", "sslcert", key),
        ("add", "cert", b_cert.cert_path, "key=%s" % b_cert.key_path),
        ("add", "sslcert", "hostnameport=c.test:%d" % port, "certhash=%s" % a.thumbprint),
        ("update", "sslcert", key, "certhash=%s" % b_cert.thumbprint),
        ("delete", "sslcert", key), ("delete", "cert", b_cert.thumbprint, "force=yes"),
        ("resolve", "ip=127.0.0.1", "port=%d" % port), ("check",),
        ("deploy", b_cert.cert_path, "key=%s" % b_cert.key_path, "preview=yes"),
        ("serve", "--workers", "1"),
    ]
    if os.geteuid() == 0:
        commands.append(("set", "user=%s" % SERVICE_USER))
    before = store.bindings()
    for mode in (0o755, 0o707, 0o770):
        os.chmod(store.state, mode)
        failed = []
        for args in commands:
            rc, out, err = store.run(*args)
            if rc != 1 or "chmod 700" not in err or str(store.state) not in err:
                failed.append("%s (mode %o): rc=%d stderr=%r" % (" ".join(map(str, args)),
                                                                 mode, rc, err[-300:]))
        assert not failed, "\n".join(failed)
    # Back to 0700: everything works again, and nothing was changed meanwhile.
    os.chmod(store.state, 0o700)
    assert store.bindings() == before
    rc, _, err = store.run("show", "sslcert")
    assert rc == 0, err


@pytest.mark.skipif(os.geteuid() != 0, reason="serve drops privileges only when started as root")
def test_serve_never_runs_as_root(store, serve):
    port = free_port()
    a = store.cert("a.test")
    store.bind("ipport=127.0.0.1:%d" % port, a)
    srv = serve()
    with tls_connect("127.0.0.1", port) as s:  # workers have loaded the key as the user
        assert peer_der(s) == a.der
    user = pwd.getpwnam(SERVICE_USER)
    for pid in srv.all_pids():
        st = proc_status(pid)
        uids = [int(x) for x in st["Uid"].split()]
        gids = [int(x) for x in st["Gid"].split()]
        groups = [int(x) for x in st.get("Groups", "").split()]
        assert uids == [user.pw_uid] * 4, "pid %d runs with uids %s" % (pid, uids)
        assert gids == [user.pw_gid] * 4, "pid %d runs with gids %s" % (pid, gids)
        assert 0 not in groups, "pid %d keeps root's group: %s" % (pid, groups)
        for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
            bits = int(st.get(cap, "0"), 16)
            assert bits & ~(1 << CAP_NET_BIND_SERVICE) == 0, "pid %d %s=%x" % (pid, cap, bits)
