"""Helpers for the fault-injection suite: the supervisor's processes by kind, killing them
safely by PID, a continuous handshake loop, a "kill on sight" thread, a systemd notify
socket, and breaking a store in the three ways the contract says must stay local.

Reuses tests/e2e/cbe2e.py (certificates, State, Server, TLS clients) by import.

Processes are only ever signalled through a pidfd opened while they are known to be ours
(the serve master is our child; the others are checked to be its children, with the start
time recorded when first seen), so a recycled PID is never hit.
"""

import os
import random
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

import cbe2e  # noqa: E402
from cbe2e import BIN, TLSConn, poll_until  # noqa: E402,F401

# The seed of every random choice (kill moments); printed in failure messages.
SEED = int(os.environ.get("CERTBIND_FAULT_SEED", "20240611"))


SANITIZED = cbe2e.binary_sanitized()
# Waits are guards against a hang, scaled for slow builds; invariants below are the spec's.
SLOW = (3 if SANITIZED else 1) * cbe2e.SLOW
GRACE = 2                    # every serve here runs with --grace 2
STOP_WITHIN = 10 * SLOW      # "the service ends within --grace plus a couple of seconds"
HANDLED_WITHIN = 2 * SLOW    # "SIGTERM is handled within 1 s", with a margin for a shared box
MAX_GAP = 2.0 * SLOW         # longest allowed gap between successful handshakes
REPLACED_WITHIN = 10 * SLOW  # a killed process is back (first restart ~100 ms after a death)
CHILD_NAMES = re.compile(r"cb-(worker-(\d+)|admin|manager)$")


def rng(test_name):
    """A random.Random seeded from SEED and the test's name (stable per test)."""
    return random.Random("%d:%s" % (SEED, test_name))


# ---- /proc ---------------------------------------------------------------------------------


def _stat(pid):
    """(state, ppid, starttime) of pid, or None when it is gone."""
    try:
        text = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return None
    f = text.rsplit(")", 1)[1].split()
    return f[0], int(f[1]), int(f[19])


def comm(pid):
    try:
        return Path("/proc/%d/comm" % pid).read_text().strip()
    except OSError:
        return None


def alive(pid):
    s = _stat(pid)
    return s is not None and s[0] != "Z"


def children_of(pid):
    try:
        return [int(x) for x in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()]
    except OSError:
        pass
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _stat(int(d))
            if s is not None and s[1] == pid:
                kids.append(int(d))
    return kids


# ---- the server --------------------------------------------------------------------------


class FaultServer(cbe2e.Server):
    """cbe2e.Server with: extra environment, signals through a pidfd, its children by kind,
    every child it ever saw remembered (so none is left behind even if the master dies), and a
    cleanup that does not wait long for a master that hangs."""

    def __init__(self, state, env=None, **kw):
        kw.setdefault("grace", GRACE)
        super().__init__(state, **kw)
        self.env_extra = dict(env or {})
        self.pidfd = None
        self.seen = {}  # pid -> starttime of every child of the master seen
        self.seen_names = {}  # pid -> its name when last seen
        self.sig_lock = threading.Lock()

    def start(self, wait_ready=True):
        cmd = [BIN, "--state", str(self.st.state), "serve"] + self.args
        env = cbe2e.base_env()
        env.update(self.env_extra)
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env=env)
        self.pidfd = os.pidfd_open(self.proc.pid)
        if wait_ready:
            self.wait_log(r"event=ready\b", cbe2e.STARTUP * SLOW)
        return self

    # signals
    def signal(self, sig):
        """Sends sig to the master; False if it has already exited."""
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
            return True
        except ProcessLookupError:
            return False

    def signal_child(self, pid, sig=None):
        """Sends sig (default SIGKILL) to pid if it is (still) a child of the master or one
        seen as such."""
        sig = signal.SIGKILL if sig is None else sig
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        try:
            s = _stat(pid)
            if s is None:
                return False
            if s[1] != self.proc.pid and self.seen.get(pid) != s[2]:
                return False
            signal.pidfd_send_signal(fd, sig)
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)

    def exited(self):
        return self.proc.poll() is not None

    def wait_exit(self, timeout):
        """The exit status, or None if the master still runs after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # children
    def kids(self):
        """{pid: comm} of the master's live children (remembered in self.seen)."""
        out = {}
        if self.exited():
            return out
        for pid in children_of(self.proc.pid):
            s = _stat(pid)
            if s is None or s[0] == "Z":
                continue
            self.seen.setdefault(pid, s[2])
            out[pid] = comm(pid)
            self.seen_names[pid] = out[pid]
        return out

    def procs(self):
        """The master's children by kind, by their names: {"workers": {index: pid},
        "admin": pid|None, "manager": pid|None}. A child not yet renamed after its fork, or
        one that is no child of serve's own (a sanitizer build's leak checker clones the
        master at exit), is left out."""
        res = {"named": True, "workers": {}, "admin": None, "manager": None}
        for pid, n in self.kids().items():
            m = CHILD_NAMES.match(n or "")
            if not m:
                continue
            if m.group(2) is not None:
                res["workers"][int(m.group(2))] = pid
            else:
                res[m.group(1)] = pid
        return res

    def workers(self):
        return self.procs()["workers"]

    def kill(self):
        """Finalizer: SIGTERM, a short wait, then SIGKILL to the master and every child of it
        ever seen (the master may have left orphans)."""
        if self.proc is None:
            return
        if not self.exited():
            self.kids()
            self.signal(signal.SIGTERM)
            if self.wait_exit(5 * SLOW) is None:
                self.kids()
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        for pid in list(self.seen):
            self.signal_child(pid, signal.SIGKILL)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def orphans(self):
        """Children seen earlier that still run (after the master has exited)."""
        out = []
        for pid, start in self.seen.items():
            s = _stat(pid)
            if s is not None and s[0] != "Z" and s[2] == start:
                out.append(pid)
        return out

    def sanitizer_reports(self):
        log = self.log()
        return [r for r in cbe2e.SANITIZER_REPORTS if r in log]


def serve(st, workers=1, admin=False, env=None, start=True, **kw):
    """A FaultServer on state st (killed with st's other servers at the end of the test)."""
    a = None
    if admin:
        a = "127.0.0.1:%d" % cbe2e.free_port()
    srv = FaultServer(st, workers=workers, admin=a, env=env, **kw)
    st.servers.append(srv)
    if start:
        srv.start()
    return srv


def replaced(srv, kind, old_pid, index=None, timeout=REPLACED_WITHIN):
    """Waits for the slot of a killed process to hold a new live process; its PID or None."""

    def look():
        p = srv.procs()
        pid = p["workers"].get(index) if kind == "worker" else p[kind]
        if kind == "worker" and not p["named"] and srv.admin is None:
            # Unnamed and no status.json: any worker PID not seen before the kill.
            new = [q for q in p["workers"].values() if q != old_pid and q not in before]
            pid = new[0] if new else None
        return pid if pid is not None and pid != old_pid and alive(pid) else None

    before = set(srv.seen) - {old_pid}
    return poll_until(look, timeout, 0.02)


def sigterm_and_wait(srv, within=STOP_WITHIN):
    """SIGTERM (if the master still runs); returns (sent, stopping_seconds, rc): how long
    until `event=stopping` was logged (None: never) and the exit status (None: still runs)."""
    srv.kids()
    off = len(srv.log())
    t0 = time.monotonic()
    sent = srv.signal(signal.SIGTERM)
    stopping = None
    rc = None
    deadline = t0 + within
    while time.monotonic() < deadline:
        if stopping is None and re.search(r"\bevent=stopping\b", srv.log()[off:]):
            stopping = time.monotonic() - t0
        rc = srv.proc.poll()
        if rc is not None:
            if stopping is None and re.search(r"\bevent=stopping\b", srv.log()[off:]):
                stopping = time.monotonic() - t0
            break
        srv.kids()
        time.sleep(0.02)
    return sent, stopping, rc


def check_clean_stop(srv, problems, expect_died=None, rc_ok=(0,), within=STOP_WITHIN):
    """SIGTERM, then the spec's end-of-life invariants, appended to problems:
    handled within HANDLED_WITHIN, ended within `within`, exit status, `event=stopped`
    last, no child left, the died lines the test caused and no others, no sanitizer report."""
    sent, stopping, rc = sigterm_and_wait(srv, within)
    log = srv.log()
    if sent and stopping is None:
        problems.append("no event=stopping after SIGTERM")
    elif sent and stopping > HANDLED_WITHIN:
        problems.append("SIGTERM handled after %.1fs (> %ss)" % (stopping, HANDLED_WITHIN))
    if rc is None:
        problems.append("serve still running %ss after SIGTERM (hang)" % within)
        srv.kill()
    else:
        if rc_ok is not None and rc not in rc_ok:
            problems.append("serve exited %d%s, expected %s" % (
                rc, " (killed by %s)" % signal.Signals(-rc).name if rc < 0 else "", rc_ok))
        last = (log.rstrip().splitlines() or [""])[-1]
        if sent and "event=stopped" not in last:
            problems.append("event=stopped is not the last log line (last: %r)" % last[:200])
        left = poll_until(lambda: not srv.orphans(), 3 * SLOW) or srv.orphans()
        if left is not True:
            problems.append("children still running after the master exited: %s" % left)
    if expect_died is not None:
        for ev in ("worker_died", "admin_died", "manager_died", "worker_fatal"):
            n = len(srv.lines(ev))
            if n != expect_died.get(ev, 0):
                problems.append("%d event=%s lines, expected %d" % (n, ev, expect_died.get(ev, 0)))
    for r in srv.sanitizer_reports():
        problems.append("sanitizer report: %s" % r)
    return rc


def verdict(srv, problems, what=""):
    """Fails with every problem found at once, the seed and the log tail."""
    if problems:
        raise AssertionError("%s\n  - %s\nseed=%d (CERTBIND_FAULT_SEED)\n---- log tail ----\n%s" % (
            what, "\n  - ".join(problems), SEED, srv.log()[-5000:] if srv else ""))


# ---- traffic ------------------------------------------------------------------------------


class HandshakeLoop(threading.Thread):
    """TLS handshakes in a loop to (sni, thumbprint) targets on 127.0.0.1:port, checking the
    certificate each time. Records every attempt: (t_start, t_end, sni, outcome)."""

    def __init__(self, port, targets, timeout=5, pace=0.005, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.port, self.targets, self.timeout, self.pace, self.host = (
            port, list(targets), timeout, pace, host)
        self.records = []
        self.halt = threading.Event()
        self.t0 = None
        self.t_stop = None

    def run(self):
        self.t0 = time.monotonic()
        i = 0
        while not self.halt.is_set():
            sni, thumb = self.targets[i % len(self.targets)]
            i += 1
            t = time.monotonic()
            try:
                with TLSConn(self.host, self.port, sni=sni, timeout=self.timeout) as c:
                    got = c.peer_thumb
                outcome = "ok" if got == thumb else "wrong:%s" % got
            except ssl.SSLError as e:
                outcome = "alert:%s" % e.reason
            except socket.timeout:
                outcome = "timeout"
            except OSError as e:
                outcome = "oserror:%s" % e.__class__.__name__
            self.records.append((t, time.monotonic(), sni, outcome))
            if self.pace:
                time.sleep(self.pace)  # paces the load on a shared 2-core machine

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.t_stop is None:
            self.halt.set()
            self.join(30)
            self.t_stop = time.monotonic()
        return self

    def ok_count(self):
        return sum(1 for r in self.records if r[3] == "ok")

    def wait_ok(self, n, timeout):
        start = self.ok_count()
        return poll_until(lambda: self.ok_count() >= start + n, timeout)

    def wrong(self):
        return [r for r in self.records if r[3].startswith("wrong:")]

    def failed(self):
        return [r for r in self.records if r[3] != "ok"]

    def max_gap(self):
        """(seconds, at): the longest time without a successful handshake, from the loop's
        start to its stop (a handshake counts when it completes)."""
        ends = [self.t0] + [r[1] for r in self.records if r[3] == "ok"] + [self.t_stop]
        best, at = 0.0, 0.0
        for a, b in zip(ends, ends[1:]):
            if b - a > best:
                best, at = b - a, a - self.t0
        return best, at

    def summary(self):
        from collections import Counter

        return "%d attempts: %s" % (len(self.records), dict(Counter(r[3] for r in self.records)))


class Killer(threading.Thread):
    """Kills (SIGKILL) every worker of srv that appears, except the PIDs in `spare`: a crash
    loop from the supervisor's point of view. Never touches cb-admin / cb-manager."""

    def __init__(self, srv, spare=(), interval=0.003):
        super().__init__(daemon=True)
        self.srv, self.spare, self.interval = srv, set(spare), interval
        self.killed = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set() and not self.srv.exited():
            kids = self.srv.kids()
            for pid, n in kids.items():
                # Only workers: never another child of the master, such as the helper a
                # sanitizer build's leak checker clones at exit (named like the master).
                if pid in self.spare or not re.match(r"cb-worker-\d+$", n or ""):
                    continue
                if self.srv.signal_child(pid, signal.SIGKILL) and pid not in self.killed:
                    self.killed.append(pid)
            time.sleep(self.interval)  # paces /proc polling

    def stop(self):
        self.halt.set()
        self.join(10)


# ---- systemd notify ------------------------------------------------------------------------


class NotifySocket(threading.Thread):
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET; records
    (monotonic time, message) for every datagram."""

    def __init__(self, folder):
        super().__init__(daemon=True)
        self.path = str(Path(folder) / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # the service user sends to it
        self.sock.settimeout(0.1)
        self.msgs = []
        self.halt = threading.Event()
        self.start()

    def run(self):
        while not self.halt.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append((time.monotonic(), data.decode(errors="replace")))

    def count(self, what, since=0.0, until=None):
        return sum(1 for t, m in list(self.msgs)
                   if t >= since and (until is None or t < until) and what in m.split("\n"))

    def close(self):
        self.halt.set()
        self.join(5)
        self.sock.close()


# ---- broken input ----------------------------------------------------------------------------


def db(st):
    return sqlite3.connect(str(st.state / "certbind.db"), timeout=10)


def insert_rows(st, rows):
    """Inserts binding rows behind certbind's back and bumps the generation (as a store edited
    by other means: no change record, so serve reads it in full)."""
    conn = db(st)
    try:
        with conn:
            for key, certhash in rows:
                conn.execute("INSERT INTO bindings(key, certhash, appid, backend, ccspath, flags, proxy) VALUES(?, ?, '', '', '', 0, 0)", (key, certhash))
            conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
    finally:
        conn.close()


# name -> what a broken binding of that kind is
BROKEN_KINDS = ("damaged_row", "unreadable_key", "nonlocal_ip")
NONLOCAL_IP = "192.0.2.7"  # TEST-NET-1: never on this machine, never sent traffic


def break_store(st, kind, port, ip_port, cert):
    """Breaks one binding's worth of the store. Returns (probe_sni or None, [names the log must
    mention]). `cert` is imported already; it is what the broken binding points at."""
    if kind == "damaged_row":
        # A key certbind would never accept and a valid key with a garbage thumbprint.
        insert_rows(st, [("hostnameport=bad..name:%d" % port, cert.thumb),
                         ("hostnameport=broken-row.test:%d" % port, "NOT-A-THUMBPRINT")])
        return "broken-row.test", ["bad..name", "broken-row.test"]
    if kind == "unreadable_key":
        os.chmod(st.key_file(cert.thumb), 0)  # the service user cannot read it any more
        insert_rows(st, [("hostnameport=broken-key.test:%d" % port, cert.thumb)])
        return "broken-key.test", ["broken-key.test"]
    if kind == "nonlocal_ip":
        insert_rows(st, [("ipport=%s:%d" % (NONLOCAL_IP, ip_port), cert.thumb)])
        return None, [NONLOCAL_IP]
    raise ValueError(kind)


def lines_naming(srv, name, after=0):
    return [l for l in srv.log()[after:].splitlines() if name in l and "level=info" not in l]
