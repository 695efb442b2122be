"""Fixtures for the OCSP stapling suite: the real `certbind serve` against a real
`openssl ocsp` responder and a crafted one (tests/ocsp/ocspkit.py).

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/ocsp
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e")]

import cbe2e  # noqa: E402
from cbe2e import BIN, SERVICE_USER, State  # noqa: E402


def pytest_report_header(config):
    return "certbind binary: %s" % BIN


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; build first or set CERTBIND_BIN" % BIN, 2)
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")


@pytest.fixture(scope="session")
def service_user():
    return cbe2e.ensure_service_user()


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-ocsp-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def new_state(workdir, name, service_user):
    folder = Path(tempfile.mkdtemp(prefix=name[:40] + "-", dir=workdir))
    os.chmod(folder, 0o755)
    st = State(folder)
    if service_user is not None:
        st.run("set", "user=%s" % SERVICE_USER)
    return st


@pytest.fixture
def st(request, workdir, service_user):
    s = new_state(workdir, request.node.name, service_user)
    yield s
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for srv in s.servers:
            print("---- serve log (%s) ----\n%s" % (srv.log_path, srv.log()[-8000:]))
    s.cleanup()
