"""set user=NAME: the service user (bindings.md section 3)."""

import os
import pwd
import stat

import pytest

from conftest import VALGRIND, CertBind

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")


@pytest.fixture
def shared_cb(world_tmp):
    """A state folder that another user can reach (for tests that switch users)."""
    home = world_tmp / "home"
    home.mkdir()
    return CertBind(world_tmp / "state", home)


def test_set_user_malformed(cb, bound):
    cb.fails(2, "set")
    cb.fails(2, "set", "user=")
    cb.fails(2, "set", "owner=nobody")
    cb.fails(2, "set", "user=nobody", "force=yes")
    cb.fails(2, "set", "user=" + "x" * 100)


def test_set_unknown_user(cb, bound):
    cb.fails(1, "set", "user=no-such-user-certbind", match="no-such-user-certbind")


def test_set_unknown_user_on_empty_state(cb):
    cb.fails(1, "set", "user=no-such-user-certbind")
    assert not cb.state.exists()


@root_only
@pytest.mark.skipif(VALGRIND, reason="the key-access test runs in a forked child, which "
                    "valgrind fails (uninitialised bytes written in util/priv.c, and the "
                    "parent's memory reported as leaked at the child's _exit)")
def test_set_user_nobody(shared_cb, certs):
    cb = shared_cb
    nobody = pwd.getpwnam("nobody")
    a, b = certs.make(cn="a.example.com"), certs.make(cn="b.example.com", key_type="rsa")
    cb.add_cert(a)
    cb.add_cert(b)
    rc, out, err = cb.run("set", "user=nobody")
    assert rc == 0, err
    assert "error" not in err and "warning" not in err
    lines = out.splitlines()
    assert lines[0].startswith("Service user is now nobody") and str(nobody.pw_uid) in lines[0]
    assert "Key access tested as nobody: 2 of 2 keys usable" in out
    # keys are the service user's and stay 0600
    for e in cb.certs():
        st = os.stat(e["key_path"])
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == nobody.pw_uid
    # a certificate imported afterwards is given to it too, and can be bound
    c = certs.make(cn="c.example.com")
    cb.add_cert(c)
    (e,) = [e for e in cb.certs() if e["thumbprint"] == c.thumbprint]
    st = os.stat(e["key_path"])
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == nobody.pw_uid
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + c.thumbprint)
    assert cb.json("resolve", "ip=192.0.2.1", "port=443")["usable"] is True
    # a key the service user cannot read is refused, and resolve says why
    os.chown(e["key_path"], 0, 0)
    msg = cb.fails(1, "add", "sslcert", "ipport=0.0.0.0:8443", "certhash=" + c.thumbprint)
    assert "nobody" in msg
    r = cb.json("resolve", "ip=192.0.2.1", "port=443")
    assert r["usable"] is False and "nobody" in r["reason"]
    # setting it again gives the state folder back to the user and re-tests
    rc, out, err = cb.run("set", "user=nobody")
    assert rc == 0 and "Key access tested as nobody: 3 of 3 keys usable" in out


@root_only
def test_set_user_on_empty_store(cb):
    """No keys yet: nothing to test as the user (and no forked child, so valgrind runs it)."""
    rc, out, err = cb.run("set", "user=nobody")
    assert rc == 0 and "error" not in err
    assert out == "Service user is now nobody (uid %d).\n" % pwd.getpwnam("nobody").pw_uid
    rc, out, err = cb.run("set", "user=root")
    assert rc == 0 and out.startswith("Service user is now root (uid 0)")


@root_only
@pytest.mark.skipif(VALGRIND, reason="the key-access test runs in a forked child (see above)")
def test_set_user_gives_nothing_outside_the_state_folder(world_tmp, certs):
    """set user=NAME gives the state folder and the files in it to the user, and nothing
    else: a linked certificate in a sibling folder whose name merely starts with the state
    folder's name (state2 beside state) keeps its owner."""
    home = world_tmp / "home"
    home.mkdir()
    cb = CertBind(world_tmp / "state", home)
    nobody = pwd.getpwnam("nobody")
    linked = certs.make(cn="linked.example.com")
    live = world_tmp / "state2" / "live"
    live.mkdir(parents=True)
    cert_file, key_file = live / "cert.pem", live / "privkey.pem"
    cert_file.write_bytes(linked.pem)
    key_file.write_bytes(linked.key_pem())
    key_file.chmod(0o600)
    out = cb.ok("add", "cert", cert_file, "key=%s" % key_file, "link=yes", native=True)
    assert out == linked.thumbprint + "\n"
    copied = certs.make(cn="copied.example.com")
    cb.add_cert(copied, native=True)
    rc, out, err = cb.run("set", "user=nobody")
    assert rc == 0, err
    by_thumb = {e["thumbprint"]: e["key_path"] for e in cb.certs()}
    assert by_thumb[linked.thumbprint] == str(key_file)
    for p in (cert_file, key_file):  # outside the state folder: still root's
        assert os.stat(p).st_uid == 0, "%s was given to nobody" % p
    # inside it: the service user's
    assert os.stat(by_thumb[copied.thumbprint]).st_uid == nobody.pw_uid
    assert os.stat(cb.state).st_uid == nobody.pw_uid
