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

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

import cbe2e  # noqa: E402

# The e2e suite's fixtures (workdir, service_user, st, backends, pki, ...) and hooks, as they are.
_spec = importlib.util.spec_from_file_location("e2e_conftest", HERE.parent / "e2e" / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)
globals().update({k: v for k, v in vars(_e2e).items() if not k.startswith("__")})


@pytest.fixture(scope="session")
def artifacts():
    """The folder for test artefacts: $CERTBIND_ARTIFACTS, else build/test-artifacts."""
    d = Path(os.environ.get("CERTBIND_ARTIFACTS") or (cbe2e.REPO / "build" / "test-artifacts"))
    d.mkdir(parents=True, exist_ok=True)
    return d
