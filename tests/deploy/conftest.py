"""Fixtures for the renewal suite (deploy, watched files, the certbot hook).

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/deploy
"""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploykit  # noqa: E402


def pytest_report_header(config):
    return "certbind binary: %s" % deploykit.BIN


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(deploykit.BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN"
                    % deploykit.BIN, 2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def cb(request):
    """A fresh state folder (under a 0755 mkdtemp) and the commands run against it;
    every serve it started is stopped by PID afterwards (its log shown on failure)."""
    env = deploykit.new_env()
    try:
        yield env
    finally:
        env.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for s in env.serves:
                print("---- serve log (pid %d) ----\n%s" % (s.proc.pid, s.log()))
        shutil.rmtree(env.base, ignore_errors=True)


@pytest.fixture
def port():
    return deploykit.free_port()


@pytest.fixture
def echo():
    backend = deploykit.EchoBackend()
    yield backend
    backend.close()
