"""Fixtures for the `certbind serve` end-to-end suite.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/e2e

Environment:
  CERTBIND_BIN       the binary (default: build/certbind in the repository)
  CERTBIND_VALGRIND  1: run `serve` under valgrind (slower start, looser bounds)

As root, serve refuses to run without a service user: the suite makes sure the
system user `certbind` exists and sets it in every state folder. Test folders
live under a mkdtemp of mode 0755 so that user can reach them.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import cbe2e
from cbe2e import BIN, IS_ROOT, SERVICE_USER, VALGRIND, Backend, State, make_cert


def pytest_report_header(config):
    return "certbind binary: %s%s" % (BIN, " (serve under valgrind)" if VALGRIND else "")


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN" % BIN, 2)


@pytest.fixture(scope="session")
def service_user():
    """As root: the system user serve drops to (created if missing). Otherwise None."""
    return cbe2e.ensure_service_user()


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="certbind-e2e-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class PKI:
    """Certificates made once per session; one per name."""

    def __init__(self, folder):
        self.dir = folder
        self._made = {}

    def get(self, stem, cn=None, names=None, client=False, key_type="ec"):
        if stem not in self._made:
            cn = cn or stem
            self._made[stem] = make_cert(self.dir, stem, cn, names if names is not None else [cn],
                                         client=client, key_type=key_type)
        return self._made[stem]


@pytest.fixture(scope="session")
def pki(workdir):
    d = workdir / "pki"
    d.mkdir()
    os.chmod(d, 0o755)
    return PKI(d)


def _new_state(workdir, name, service_user):
    folder = Path(tempfile.mkdtemp(prefix=name[:40] + "-", dir=workdir))
    os.chmod(folder, 0o755)
    st = State(folder)
    if service_user is not None:
        st.run("set", "user=%s" % SERVICE_USER)
    return st


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def st(request, workdir, service_user):
    """A fresh state folder (service user set when root); its servers are killed at the end,
    and their logs printed when the test failed."""
    s = _new_state(workdir, request.node.name.replace("[", "-").replace("]", "").replace("/", "_"),
                   service_user)
    yield s
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for srv in s.servers:
            print("---- serve log (%s) ----\n%s" % (srv.log_path, srv.log()[-6000:]))
    s.cleanup()


@pytest.fixture(scope="module")
def mod_state(request, workdir, service_user):
    s = _new_state(workdir, request.module.__name__, service_user)
    yield s
    s.cleanup()


def _backend_factory():
    """make(handler) -> a started Backend; every one made is closed at the end."""
    made = []

    def make(handler=cbe2e.echo_handler, host="127.0.0.1"):
        b = Backend(handler, host)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def backends():
    yield from _backend_factory()


@pytest.fixture(scope="module")
def mod_backends():
    yield from _backend_factory()
