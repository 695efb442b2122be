"""Several certbind processes changing one store at the same time.

Every command either succeeds or fails with exit 1 and a "busy ... try again" message;
afterwards the database is intact and holds exactly the changes that succeeded.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import VALGRIND, assert_one_error

ROUNDS = 3 if VALGRIND else 12


def is_busy(rc, out, err):
    return rc == 1 and out == "" and "busy" in err and "try again" in err


def check_outcome(args, rc, out, err):
    if rc == 0:
        return True
    assert is_busy(rc, out, err), "certbind %s: rc=%d stdout=%r stderr=%r" % (args, rc, out, err)
    assert_one_error(err)
    return False


@pytest.mark.parametrize("workers", [2, pytest.param(8, marks=pytest.mark.skipif(
    VALGRIND, reason="8 valgrind processes at once: too slow for CTest's limit; 2 run"))])
def test_parallel_add_delete_sslcert(cb, bound, workers):
    t = bound.thumbprint
    cb.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t)
    lock = threading.Lock()
    expected = {"ipport=0.0.0.0:443"}
    counts = {"ok": 0, "busy": 0}

    def worker(w):
        present = set()
        for i in range(ROUNDS):
            key = "ipport=10.%d.0.%d:443" % (w, i)
            args = ("add", "sslcert", key, "certhash=" + t, "backend=127.0.0.1:%d" % (8000 + i))
            done = check_outcome(args, *cb.run(*args))
            if done:
                present.add(key)
            # delete every other binding this worker added, while the others keep writing
            if done and i % 2 == 1:
                args = ("delete", "sslcert", key)
                if check_outcome(args, *cb.run(*args)):
                    present.discard(key)
            with lock:
                counts["ok" if done else "busy"] += 1
        # and one more add/delete pair on a key every worker shares
        shared = "hostnameport=shared%d.example.com:9443" % (w % 2)
        rc, out, err = cb.run("add", "sslcert", shared, "certhash=" + t)
        assert rc == 0 or is_busy(rc, out, err) or (rc == 1 and "already exists" in err), err
        return present

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for present in pool.map(worker, range(workers)):
            expected |= present
    assert cb.integrity() == "ok"
    keys = {b["key"] for b in cb.bindings()}
    shared = {k for k in keys if k.startswith("hostnameport=shared")}
    assert keys - shared == expected
    for b in cb.bindings():
        assert b["certhash"] == t
        if b["key"].startswith("ipport=10."):
            i = int(b["key"].split(".")[3].split(":")[0])
            assert b["backend"] == "127.0.0.1:%d" % (8000 + i)
    assert counts["ok"] > 0


def test_parallel_imports_into_a_new_state_folder(cb, certs):
    """Processes racing to create the store and import different certificates."""
    cs = [certs.make(cn="c%d.example.com" % i, key_type="rsa" if i % 2 else "ec")
          for i in range(6)]
    barrier = threading.Barrier(len(cs))

    def importer(c):
        barrier.wait()
        args = ("add", "cert", c.bundle_path)
        rc, out, err = cb.run(*args)
        if check_outcome(args, rc, out, err):
            assert out == c.thumbprint + "\n"
            return c.thumbprint
        return None

    with ThreadPoolExecutor(max_workers=len(cs)) as pool:
        imported = {t for t in pool.map(importer, cs) if t}
    assert cb.integrity() == "ok"
    assert {e["thumbprint"] for e in cb.certs()} == imported
    assert imported, "every import was refused as busy"
    # each imported certificate has its files; the refused ones left none behind
    assert sorted(p.name for p in (cb.state / "keys").iterdir()) == \
        sorted(t + ".key" for t in imported)
    assert sorted(p.name for p in (cb.state / "certs").iterdir()) == \
        sorted(t + ".pem" for t in imported)
