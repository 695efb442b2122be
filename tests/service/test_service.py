"""certbind as a Linux service: the systemd unit, sd_notify, journal logs, make install,
the man page and bash completion."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CERTBIND_BIN", os.path.join(REPO, "build", "certbind"))
BUILD = os.path.dirname(BIN)


def sh(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="cb-service-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unit_passes_systemd_analyze_verify(work):
    unit = open(os.path.join(BUILD, "certbind.service")).read()
    exec_line = [l for l in unit.splitlines() if l.startswith("ExecStart=")][0]
    assert exec_line.endswith("/certbind serve --admin 127.0.0.1:9110")
    for needed in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=certbind",
                   "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                   "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "ProtectSystem=strict",
                   "StateDirectory=certbind", "NoNewPrivileges=yes"):
        assert needed in unit, needed
    # Verify the unit as it would be installed, pointing at the binary under test.
    path = os.path.join(work, "certbind.service")
    with open(path, "w") as f:
        f.write(unit.replace(exec_line, "ExecStart=%s serve" % BIN))
    man = os.path.join(work, "man", "man8")
    os.makedirs(man)
    shutil.copy(os.path.join(BUILD, "certbind.8"), man)
    r = sh("systemd-analyze", "verify", path, env=dict(os.environ, MANPATH=os.path.join(work, "man")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "certbind.service" not in r.stderr, r.stderr


def test_verify_catches_a_broken_unit(work):
    """The verify test can fail: a unit with a bad directive is refused."""
    unit = open(os.path.join(BUILD, "certbind.service")).read()
    path = os.path.join(work, "certbind.service")
    with open(path, "w") as f:
        f.write(unit.replace("Type=notify", "Type=notifyy").replace(
            "ExecStart=" + unit.split("ExecStart=")[1].split("\n")[0], "ExecStart=%s serve" % BIN))
    r = sh("systemd-analyze", "verify", path)
    assert r.returncode != 0 or "notifyy" in r.stderr


def test_make_install_puts_every_piece(work):
    prefix = os.path.join(work, "prefix")
    r = sh("cmake", "--install", BUILD, "--prefix", prefix)
    assert r.returncode == 0, r.stderr
    for rel in ("bin/certbind", "share/man/man8/certbind.8", "lib/systemd/system/certbind.service",
                "share/bash-completion/completions/certbind", "share/certbind/certbot-deploy-hook"):
        assert os.path.exists(os.path.join(prefix, rel)), rel
    assert os.access(os.path.join(prefix, "bin/certbind"), os.X_OK)


def test_man_page_documents_every_command_and_exit_status():
    page = sh("man", "-l", os.path.join(BUILD, "certbind.8"), env=dict(os.environ, MANWIDTH="200"))
    assert page.returncode == 0
    text = page.stdout
    for word in ("add cert", "show cert", "delete cert", "add sslcert", "update sslcert",
                 "delete sslcert", "show sslcert", "resolve", "check", "deploy", "set user",
                 "serve", "EXIT STATUS", "EXAMPLES", "disablehttp2", "proxyprotocol",
                 "ip-shadows-sni"):
        assert word in text, word


def complete(line):
    script = """
source /usr/share/bash-completion/bash_completion
source %s
COMP_LINE=%r
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_POINT=${#COMP_LINE}
_certbind
printf '%%s\\n' "${COMPREPLY[@]}"
""" % (os.path.join(REPO, "contrib/bash-completion/certbind"), line)
    r = sh("bash", "-c", script)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


@pytest.mark.skipif(not os.path.exists("/usr/share/bash-completion/bash_completion"),
                    reason="bash-completion not installed")
def test_bash_completion_verbs_objects_and_keys():
    assert {"add", "show", "delete", "update", "resolve", "check", "deploy", "set", "serve"} <= complete("certbind ")
    assert complete("certbind add ") >= {"cert", "sslcert"}
    keys = complete("certbind add sslcert ")
    assert {"ipport=", "hostnameport=", "ccs=", "certhash=", "backend=", "disablehttp2="} <= keys
    assert complete("certbind update sslcert disabletls13=") >= {"enable", "disable"}
    assert complete("certbind resolve ") >= {"ip=", "port=", "sni="}


def make_state(work):
    """A store with one binding, ready to serve as the current (or service) user."""
    state = os.path.join(work, "state")
    cert, key = os.path.join(work, "c.pem"), os.path.join(work, "c.key")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", cert, "-subj", "/CN=svc.test", "-addext",
       "subjectAltName=DNS:svc.test", "-days", "30")
    thumb = sh(BIN, "--state", state, "add", "cert", cert, "key=" + key).stdout.strip()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = sh(BIN, "--state", state, "add", "sslcert", "hostnameport=svc.test:%d" % port,
           "certhash=" + thumb)
    assert r.returncode == 0, r.stderr
    if os.geteuid() == 0:
        if sh("id", "certbind").returncode != 0:
            sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "certbind")
        assert sh(BIN, "--state", state, "set", "user=certbind").returncode == 0
    return state


def test_sd_notify_ready_reloading_stopping_and_journal_lines(work):
    state = make_state(work)
    sock_path = os.path.join(work, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    os.chmod(sock_path, 0o777)  # the master writes it after dropping to the service user
    sock.settimeout(20)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, INVOCATION_ID="0" * 32, JOURNAL_STREAM="8:1")
    p = subprocess.Popen([BIN, "--state", state, "serve", "--workers", "1"], env=env,
                         stderr=subprocess.PIPE, text=True)
    try:
        def expect(word):
            deadline = time.time() + 20
            while time.time() < deadline:
                msg = sock.recv(4096).decode()
                if word in msg.split("\n"):
                    return msg
            raise AssertionError("no %s" % word)
        ready = expect("READY=1")
        assert "MAINPID=%d" % p.pid in ready
        p.send_signal(1)  # SIGHUP
        expect("RELOADING=1")
        expect("READY=1")
        p.terminate()
        expect("STOPPING=1")
        assert p.wait(timeout=30) == 0
        err = p.stderr.read()
        lines = [l for l in err.splitlines() if l]
        assert lines, err
        # Under systemd the journal adds timestamps: lines carry a priority prefix instead.
        for l in lines:
            assert l.startswith(("<3>level=", "<4>level=", "<6>level=")), l
            assert " event=" in l
        assert any(l.startswith("<6>level=info") and "event=ready" in l for l in lines)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sock.close()
