"""Fixtures of the fleet suite (helpers in fleetlib.py)."""

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import fleetlib


@pytest.fixture(scope="session", autouse=True)
def _tools_exist():
    for path, what in ((fleetlib.BIN, "certbind binary"), (fleetlib.PROBE, "cb_etcd_probe"),
                       (fleetlib.ETCD, "etcd (apt-get install etcd-server)"),
                       (fleetlib.ETCDCTL, "etcdctl (apt-get install etcd-client)")):
        if not os.access(path, os.X_OK):
            pytest.exit("%s not found at %s" % (what, path), 2)


@pytest.fixture(scope="module")
def etcd():
    """One etcd member for the module; each test takes its own key prefix."""
    e = fleetlib.Etcd(1)
    yield e
    e.close()


@pytest.fixture
def own_etcd():
    """An etcd member of the test's own (it stops, restarts or compacts it)."""
    e = fleetlib.Etcd(1)
    yield e
    e.close()


_prefixes = itertools.count()


@pytest.fixture
def tmp():
    d = Path(tempfile.mkdtemp(prefix="cb-fleet-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fleet(etcd, tmp):
    return make_fleet(etcd, tmp)


@pytest.fixture
def own_fleet(own_etcd, tmp):
    return make_fleet(own_etcd, tmp)


class Fleet:
    def __init__(self, etcd, tmp, prefix):
        self.etcd = etcd
        self.prefix = prefix
        self.url = etcd.url(prefix)
        self.files = fleetlib.Files(tmp / "files")
        self.key = self.files.store_key()
        self.tmp = tmp
        self.n = 0

    def node(self, key="same"):
        self.n += 1
        k = self.key if key == "same" else key
        return fleetlib.Node(self.tmp / ("node%d" % self.n), self.url, k)

    def values(self):
        return self.etcd.get_prefix(self.prefix + "/")


def make_fleet(etcd, tmp):
    return Fleet(etcd, tmp, "cbtest%d-%d" % (os.getpid(), next(_prefixes)))
