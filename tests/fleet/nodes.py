"""Fleet fixtures: a real etcd (one member or a three-member cluster) on loopback, and
certbind nodes that share it (design section 8).

    cluster = EtcdCluster(folder, members=3).start()
    key = make_store_key(folder)
    nodes = [Node(folder, "n%d" % i, cluster.url("t1"), key, "127.0.0.1%d" % i) for i in 1..3]
    nodes[0].cli("add", "cert", ...)      # a command against the fleet store
    nodes[0].start_serve()                # serve --store ... --store-key ... --iplisten ...

etcd members and serve processes are started by the fixture and stopped by their PID.
Every wait has a deadline; nothing sleeps as synchronisation.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e")]

import cbe2e  # noqa: E402
from cbe2e import IS_ROOT, SERVICE_USER, SLOW, State, free_port  # noqa: E402

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
ETCD_START = 30 * SLOW


def wait_for(fn, timeout, what, interval=0.02):
    """Calls fn until it returns a true value (returned) or timeout seconds pass (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not within %ss" % (what, timeout))
        time.sleep(interval)


class EtcdMember:
    def __init__(self, folder, name, client_port, peer_port):
        self.name = name
        self.data = folder / ("etcd-" + name)
        self.client_port = client_port
        self.peer_port = peer_port
        self.log_path = folder / ("etcd-%s.log" % name)
        self.proc = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        try:
            with urllib.request.urlopen("http://%s/health" % self.endpoint, timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False


class EtcdCluster:
    """`members` etcd processes (etcd-server from Debian) on loopback, temporary data
    folders, free ports; start() returns once every member reports healthy."""

    def __init__(self, folder, members=1, token=None, extra=()):
        # Each cluster its own folder: a data folder left by another cluster is not reused.
        self.dir = Path(tempfile.mkdtemp(prefix="etcd-", dir=folder))
        self.extra = list(extra)  # more etcd flags (the bench raises --max-txn-ops)
        self.members = []
        used = set()
        for i in range(members):
            cp, pp = free_port(), free_port()
            while cp in used or pp in used or cp == pp:
                cp, pp = free_port(), free_port()
            used |= {cp, pp}
            self.members.append(EtcdMember(self.dir, "m%d" % i, cp, pp))
        self.token = token or "cbfleet-%d" % os.getpid()
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (m.name, m.peer_port)
                                for m in self.members)

    def _launch(self, m):
        cmd = [ETCD, "--name", m.name, "--data-dir", str(m.data),
               "--listen-client-urls", "http://%s" % m.endpoint,
               "--advertise-client-urls", "http://%s" % m.endpoint,
               "--listen-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
               "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % m.peer_port,
               "--initial-cluster", self.initial, "--initial-cluster-token", self.token,
               "--initial-cluster-state", "new",
               # Fast elections: a stopped leader is replaced within a second or two.
               "--heartbeat-interval", "50", "--election-timeout", "500",
               "--logger", "zap", "--log-outputs", "stderr"] + self.extra
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=cbe2e.base_env())

    def start(self):
        for m in self.members:
            self._launch(m)
        for m in self.members:
            self.wait_healthy(m)
        return self

    def wait_healthy(self, m):
        def ok():
            if not m.running():
                raise AssertionError("etcd %s exited %s; log:\n%s" % (
                    m.name, m.proc.returncode, m.log_path.read_text(errors="replace")[-3000:]))
            return m.healthy()
        wait_for(ok, ETCD_START, "etcd %s healthy" % m.name)

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def url(self, prefix):
        return "etcd://%s/%s" % (self.endpoints, prefix)

    def stop_member(self, m, sig=signal.SIGKILL):
        """Stops one member by its PID (SIGKILL by default: etcd gone at once)."""
        if m.running():
            os.kill(m.proc.pid, sig)
            m.proc.wait(30)

    def restart_member(self, m):
        assert not m.running()
        self._launch(m)
        self.wait_healthy(m)

    def stop(self):
        for m in self.members:
            self.stop_member(m)

    def restart(self):
        for m in self.members:
            if not m.running():
                self._launch(m)
        for m in self.members:
            self.wait_healthy(m)

    def leader(self):
        """The member that leads now (asked through etcdctl endpoint status)."""
        live = [m for m in self.members if m.running()]
        p = subprocess.run([ETCDCTL, "--endpoints", ",".join(m.endpoint for m in live),
                            "endpoint", "status", "-w", "json"],
                           capture_output=True, text=True, timeout=30, env=cbe2e.base_env())
        if p.returncode != 0:
            return None
        for st in json.loads(p.stdout):
            # etcdctl leaves out zero fields: no "leader" while an election runs.
            status = st.get("Status", {})
            me, lead = status.get("header", {}).get("member_id"), status.get("leader")
            if lead and me == lead:
                for m in live:
                    if st["Endpoint"].endswith(m.endpoint):
                        return m
        return None

    def etcdctl(self, *args):
        p = subprocess.run([ETCDCTL, "--endpoints", self.endpoints] + list(args),
                           capture_output=True, timeout=60, env=cbe2e.base_env())
        assert p.returncode == 0, p.stderr.decode(errors="replace")
        return p.stdout

    def dump(self, prefix):
        """Every key and value under prefix, as etcdctl prints them (bytes)."""
        return self.etcdctl("get", "--prefix", prefix + "/")


def make_store_key(folder, name="store.key"):
    """32 random bytes, mode 0600, as `openssl rand -out FILE 32` makes it; owned by the
    service user when root (serve reads it as that user)."""
    path = Path(folder) / name
    subprocess.run(["openssl", "rand", "-out", str(path), "32"], check=True)
    os.chmod(path, 0o600)
    if IS_ROOT:
        user = cbe2e.ensure_service_user()
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class Node(State):
    """A certbind node: its own state folder (the replica), the fleet store's URL and
    key, and its own address through --iplisten. Commands run against the fleet store."""

    def __init__(self, folder, name, store_url, store_key, address, service_user=True):
        d = Path(tempfile.mkdtemp(prefix=name + "-", dir=folder))
        os.chmod(d, 0o755)
        super().__init__(d)
        self.name = name
        self.store_url = store_url
        self.store_key = store_key
        self.address = address
        self.srv = None
        if IS_ROOT and service_user:
            # Node-local: the service user lives in the node's own folder, not in the fleet.
            State.run(self, "set", "user=%s" % SERVICE_USER)

    def fleet_args(self):
        return ["--store", self.store_url, "--store-key", str(self.store_key)]

    def run(self, *args, check=True):
        return State.run(self, *(self.fleet_args() + [str(a) for a in args]), check=check)

    def local(self, *args, check=True):
        """A command against the replica alone (no --store)."""
        return State.run(self, *args, check=check)

    def start_serve(self, wait_ready=True, workers=1, extra=()):
        self.srv = self.serve(workers=workers, extra_args=self.fleet_args() + [
            "--iplisten", self.address] + list(extra))
        self.srv.start(wait_ready=wait_ready)
        return self.srv

    def served_thumb(self, port, sni=None):
        """The thumbprint this node serves on its address and port now, or None when the
        handshake fails."""
        try:
            with cbe2e.TLSConn(self.address, port, sni=sni, timeout=5) as c:
                return c.peer_thumb
        except (OSError, cbe2e.ssl.SSLError):
            return None

    def wait_serves(self, port, sni, thumb, timeout=10 * SLOW):
        return wait_for(lambda: self.served_thumb(port, sni) == thumb, timeout,
                        "node %s serving %s on %s:%d (sni %s)" % (self.name, thumb, self.address,
                                                                   port, sni), interval=0.01)
