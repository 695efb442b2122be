"""Fixtures for the fault-injection suite: the supervisor of `certbind serve` under kill -9,
crash loops, signal storms, broken stores and a systemd watchdog.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/fault

Environment:
  CERTBIND_BIN         the binary (default: build/certbind in the repository)
  CERTBIND_SANITIZED   1: an ASan/UBSan build (also detected from the binary): longer guards
  CERTBIND_FAULT_SEED  the seed of the random kill moments (printed in every failure)

It reuses the e2e suite's fixtures and helpers (tests/e2e): as root, serve runs as the system
user `certbind`; every test folder is a mkdtemp of mode 0755 that user can reach. Network on
loopback only (the one non-local address, 192.0.2.7, is only bound, never sent traffic).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

import cbe2e  # noqa: E402
import faultlib as fl  # noqa: E402

# The e2e suite's fixtures (workdir, service_user, st, pki, ...) and hooks, as they are.
_spec = importlib.util.spec_from_file_location("e2e_conftest", HERE.parent / "e2e" / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)
globals().update({k: v for k, v in vars(_e2e).items()
                  if not k.startswith("__") and k != "pytest_report_header"})


def pytest_report_header(config):
    return "certbind binary: %s%s; fault seed %d (CERTBIND_FAULT_SEED)" % (
        cbe2e.BIN, " (sanitized)" if fl.SANITIZED else "", fl.SEED)


class Sites:
    """Two healthy SNI bindings a.test and b.test on one port, a 0.0.0.0 default on that port
    (so a fall-through would show as its certificate), and a spare imported certificate k for
    the binding a test breaks."""

    def __init__(self, st, pki):
        self.st = st
        self.a = pki.get("fault-a", "a.test", ["a.test"])
        self.b = pki.get("fault-b", "b.test", ["b.test"])
        self.d = pki.get("fault-default", "default.test", ["default.test"])
        self.k = pki.get("fault-k", "broken.test", ["broken.test"])
        for c in (self.a, self.b, self.d, self.k):
            st.add_cert(c)
        self.port = cbe2e.free_port()
        self.ip_port = cbe2e.free_port()
        st.add("hostnameport=a.test:%d" % self.port, self.a)
        st.add("hostnameport=b.test:%d" % self.port, self.b)
        st.add("ipport=0.0.0.0:%d" % self.port, self.d)
        self.targets = [("a.test", self.a.thumb), ("b.test", self.b.thumb)]

    def loop(self, **kw):
        return fl.HandshakeLoop(self.port, self.targets, **kw)

    def healthy(self):
        """None if both healthy bindings serve their own certificate now, else what they gave."""
        got = {sni: cbe2e.try_thumb("127.0.0.1", self.port, sni) for sni, _ in self.targets}
        want = dict(self.targets)
        return None if got == want else {k: (v, want[k]) for k, v in got.items()}


@pytest.fixture
def sites(st, pki):
    return Sites(st, pki)
