"""Fixtures for the ACME end-to-end suite: the real `certbind serve` (its manager
process orders certificates) against a real Pebble and pebble-challtestsrv.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/acme

Environment:
  CERTBIND_BIN   the binary (default: build/certbind in the repository)
  CB_ACME_KEEP   1: keep the test folder (logs of serve, Pebble, the hook) and print it

One Pebble and one serve per module (a module's tests share them, in file order; each
test still brings what it needs through Env.ensure_*). Pebble's TLS-ALPN-01 port is the
port the bindings are on, its DNS is challtestsrv's mock (every name is 127.0.0.1), and
its random badNonce rejection stays on. As root, serve runs as the system user
`certbind`: test folders are 0755 and Pebble's CA file is world-readable.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e"), str(HERE.parent / "acme_client")]

import cbe2e  # noqa: E402
import pebblekit  # noqa: E402
from acmekit import Env, write_hook  # noqa: E402
from cbe2e import BIN, IS_ROOT, SERVICE_USER, State, make_cert  # noqa: E402


def pytest_report_header(config):
    return "certbind binary: %s" % BIN


@pytest.fixture(scope="session", autouse=True)
def _tools_exist():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; build first or set CERTBIND_BIN" % BIN, 2)
    for tool in pebblekit.tools_missing():
        pytest.skip("%s is not installed" % tool)


@pytest.fixture(scope="session")
def service_user():
    """As root: the system user serve drops to (created if missing). Otherwise None."""
    return cbe2e.ensure_service_user()


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-acme-e2e-"))
    os.chmod(d, 0o755)
    yield d
    if os.environ.get("CB_ACME_KEEP") == "1":
        print("\ntest folder kept: %s" % d)
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tls(workdir):
    d = workdir / "tls"
    d.mkdir(mode=0o755)
    return pebblekit.TLSFiles(d)


@pytest.fixture(scope="session")
def challsrv(workdir):
    srv = pebblekit.ChallTestSrv(workdir, tlsalpn=False)
    yield srv
    srv.close()


def new_state(workdir, name, service_user):
    folder = Path(tempfile.mkdtemp(prefix=name[:40] + "-", dir=workdir))
    os.chmod(folder, 0o755)
    st = State(folder)
    if service_user is not None:
        st.run("set", "user=%s" % SERVICE_USER)
    return st


@pytest.fixture(scope="module")
def env(request, workdir, tls, challsrv, service_user):
    """A running serve with a default binding 0.0.0.0:P and no ACME account yet (the
    first test sets it), and a Pebble validating TLS-ALPN-01 on port P."""
    name = request.module.__name__
    st = new_state(workdir, name, service_user)
    port = cbe2e.free_port()
    pebble = pebblekit.Pebble(st.dir / "pebble", tls, challsrv, tls_port=port)
    hook, hook_log = write_hook(st.dir / "hook", challsrv)
    default = make_cert(st.dir, "default", "default.acme.test")
    st.add_cert(default)
    st.add("ipport=0.0.0.0:%d" % port, default)
    e = Env(st, pebble, challsrv, tls, port, hook, hook_log, default, cbe2e.free_port())
    e.start_serve()
    try:
        yield e
        # The last serve stops cleanly too: exit 0, no sanitizer report (an error here
        # is reported against the module's last test).
        if e.srv.proc.poll() is None:
            e.srv.stop()
    finally:
        st.cleanup()
        pebble.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    """When a test fails: the tail of serve's and Pebble's logs."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed or "env" not in request.fixturenames:
        return
    e = request.getfixturevalue("env")
    if e.srv is not None:
        print("---- serve log (%s) ----\n%s" % (e.srv.log_path, e.srv.log()[-8000:]))
    try:
        print("---- pebble log ----\n%s" % e.pebble.log_text()[-4000:])
    except OSError:
        pass
    print("---- hook log ----\n%s" % e.hook_log.read_text())
