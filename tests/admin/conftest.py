"""Fixtures for the `certbind serve --admin` suite: /metrics (checked with promtool), the
status page (driven in headless Chromium), /status.json, the flags and the admin process.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/admin

Environment:
  CERTBIND_BIN        the binary (default: build/certbind in the repository)
  CERTBIND_ARTIFACTS  where the status page screenshot goes (default: build/test-artifacts)

It reuses the e2e suite's helpers (tests/e2e/cbe2e.py): the server process, TLS clients and
backends. As root, serve runs as the system user `certbind` (created when missing); every
test folder is under a mkdtemp of mode 0755 so that user can reach it. Ports are found free.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

import cbe2e  # noqa: E402
from cbe2e import BIN, IS_ROOT, SERVICE_USER, Backend, State  # noqa: E402


def pytest_report_header(config):
    return "certbind binary: %s" % BIN


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN" % BIN, 2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def service_user():
    """As root: the system user serve drops to (created if missing). Otherwise None."""
    if not IS_ROOT:
        return None
    if subprocess.run(["id", SERVICE_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SERVICE_USER], check=True, capture_output=True)
    return SERVICE_USER


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-admin-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def st(request, workdir, service_user):
    """A fresh state folder (service user set when root). Its servers are killed at the end,
    and their logs printed when the test failed."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "_")[:40]
    folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=workdir))
    os.chmod(folder, 0o755)
    s = State(folder)
    if service_user is not None:
        s.run("set", "user=%s" % SERVICE_USER)
    yield s
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for srv in s.servers:
            print("---- serve log (%s) ----\n%s" % (srv.log_path, srv.log()[-6000:]))
    s.cleanup()


@pytest.fixture
def backends():
    """backends(handler) -> a started Backend; all closed at the end."""
    made = []

    def make(handler=cbe2e.echo_handler, host="127.0.0.1"):
        b = Backend(handler, host)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture(scope="session")
def artifacts():
    """The folder for test artefacts: $CERTBIND_ARTIFACTS, else build/test-artifacts."""
    d = Path(os.environ.get("CERTBIND_ARTIFACTS") or (cbe2e.REPO / "build" / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d
