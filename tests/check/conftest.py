"""Fixtures of the `certbind check` suite (helpers in checklib.py)."""

import os

import pytest

import checklib


def pytest_report_header(config):
    return "certbind binary: %s (service user: %s)" % (
        checklib.BIN, checklib.SERVICE_USER if checklib.IS_ROOT else "none, not root")


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(checklib.BIN, os.X_OK):
        pytest.exit("certbind binary %s not found; run 'make build' or set CERTBIND_BIN"
                    % checklib.BIN, 2)


@pytest.fixture
def cb():
    """A fresh state folder (service user `certbind` when root)."""
    c = checklib.new_store()
    yield c
    checklib.remove_store(c)
