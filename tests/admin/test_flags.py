"""--admin and --admin-public: what is refused at once (exit 2), a busy port (exit 1), IPv6."""

import socket
import subprocess

import pytest

import adminlib as al
import cbe2e
from cbe2e import BIN, ERR, base_env, free_port


def _store_with_a_binding(st):
    a = al.make_cert_days(st.dir, "a", "a.test")
    st.add_cert(a)
    P = free_port()
    st.add("hostnameport=a.test:%d" % P, a)
    return P


def _serve_once(st, *flags):
    """Runs serve that must exit by itself (it is refused); returns (status, stdout, stderr)."""
    cmd = [BIN, "--state", str(st.state), "serve", "--workers", "1"] + list(flags)
    try:
        p = subprocess.run(cmd, env=base_env(), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60 * al.SLOW)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("serve %s did not exit: it should have refused at once" % flags) from e
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def _one_error_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, "want one error line, got:\n%s" % err
    assert lines[0].startswith(ERR), lines[0]
    return lines[0]


def test_public_address_without_admin_public_is_refused(st):
    _store_with_a_binding(st)
    port = free_port()
    rc, out, err = _serve_once(st, "--admin", "0.0.0.0:%d" % port)
    assert rc == 2, (rc, out, err)
    line = _one_error_line(err)
    assert "--admin-public" in line and "0.0.0.0:%d" % port in line, line
    assert out == ""
    # Nothing was started: the port is still free.
    assert al.connect_refused("127.0.0.1:%d" % port)


def test_public_address_with_admin_public_starts(st):
    _store_with_a_binding(st)
    port = free_port()
    srv = st.serve(admin="0.0.0.0:%d" % port, admin_public=True).start()
    srv.wait_log(r"event=admin addr=0\.0\.0\.0:%d\b" % port, 10 * al.SLOW)
    # Reached through loopback, which 0.0.0.0 covers.
    m = al.scrape("127.0.0.1:%d" % port)
    assert m.get("certbind_bindings") == 1
    srv.stop()


@pytest.mark.parametrize("value", ["9110", "[::1]", "127.0.0.1:0", "127.0.0.1:70000", "host:1",
                                   "localhost:9110", "127.0.0.1:", ":9110", "127.0.0.1:x",
                                   "127.0.0.1:+9110", "::1:9110", "[::1:9110", "[]:9110",
                                   "127.0.0.1:9110:1", ""])
def test_malformed_admin_values_exit_2(st, value):
    _store_with_a_binding(st)
    rc, out, err = _serve_once(st, "--admin", value)
    assert rc == 2, (value, rc, out, err)
    line = _one_error_line(err)
    assert "--admin" in line, line


def test_admin_public_alone_exits_2(st):
    _store_with_a_binding(st)
    rc, out, err = _serve_once(st, "--admin-public")
    assert rc == 2, (rc, out, err)
    line = _one_error_line(err)
    assert "--admin-public" in line and "--admin" in line, line


def test_admin_port_in_use_fails_start_up(st):
    P = _store_with_a_binding(st)
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        rc, out, err = _serve_once(st, "--admin", "127.0.0.1:%d" % port)
        assert rc == 1, (rc, out, err)
        errors = [l for l in err.splitlines() if l.startswith(ERR)]
        assert len(errors) == 1, err
        assert "127.0.0.1:%d" % port in errors[0] and "in use" in errors[0], errors[0]
        # No worker was left listening on the TLS port.
        assert cbe2e.connect_refused("127.0.0.1", P)
    finally:
        busy.close()


def test_ipv6_loopback_admin(st):
    if not al.ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    _store_with_a_binding(st)
    addr, port = al.admin_addr("::1")
    assert addr == "[::1]:%d" % port
    srv = st.serve(admin=addr).start()
    m = al.scrape(addr)
    assert m.get("certbind_bindings") == 1
    assert al.request(addr, "/").status == 200
    # Only ::1 listens: not the IPv4 loopback.
    assert al.connect_refused("127.0.0.1:%d" % port)
    srv.stop()
