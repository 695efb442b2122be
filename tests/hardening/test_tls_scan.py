"""A TLS scan of a running certbind with testssl.sh (Debian package): no protocol below TLS 1.2
is offered and no finding is HIGH or CRITICAL. Installed when missing (as root); skipped when
it cannot be. It runs in the sanitizer pass too (about 40 s either way): its odd handshakes
(SSLv2, heartbeat, renegotiation, fallback probes) are worth running under ASan."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import figure, free_port, http_ok_handler

SCAN_TIMEOUT = 180


def find_testssl():
    for name in ("testssl", "testssl.sh"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0:
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "testssl.sh"],
                 ["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "testssl.sh"]):
        try:
            r = subprocess.run(step, env=env, capture_output=True, timeout=300)
        except subprocess.TimeoutExpired:
            return None
        if step[1] == "install" and r.returncode == 0:
            break
    for name in ("testssl", "testssl.sh"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_testssl_finds_no_old_protocol_and_no_vulnerability(store, serve, backends, work):
    tool = find_testssl()
    if tool is None:
        pytest.skip("testssl.sh is not installed and cannot be installed here (needs root "
                    "and Debian's package)")
    port = free_port()
    be = backends(http_ok_handler)
    c = store.cert("scan.test", rsa_key=True)  # RSA: ROBOT and friends have something to test
    store.bind("ipport=127.0.0.1:%d" % port, c, "backend=%s" % be.addr, "disablehttp2=enable")
    serve()
    report = work / "testssl.json"
    try:
        r = subprocess.run([tool, "--quiet", "--color", "0", "--warnings", "batch",
                            "--jsonfile", str(report), "-p", "-U", "--ip", "127.0.0.1",
                            "https://127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=SCAN_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("testssl.sh did not finish within %d s" % SCAN_TIMEOUT)
    assert report.exists(), "testssl.sh wrote no report (rc=%d): %s" % (r.returncode,
                                                                      r.stdout[-2000:])
    found = {f["id"]: f for f in json.loads(report.read_text())}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3", "heartbleed",
                  "CCS", "ROBOT", "POODLE_SSL", "SWEET32", "FREAK", "LOGJAM", "BEAST"):
        assert proto in found, "the scan did not report %s:\n%s" % (proto, r.stdout[-3000:])
    old = [p for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
           if "not offered" not in found[p]["finding"]]
    assert not old, "offered below TLS 1.2: %s" % {p: found[p]["finding"] for p in old}
    assert found["TLS1_2"]["finding"].startswith("offered")
    assert found["TLS1_3"]["finding"].startswith("offered")
    severities = {}
    for f in found.values():
        severities[f["severity"]] = severities.get(f["severity"], 0) + 1
    figure("testssl.sh -p -U findings by severity", severities)
    bad = ["%s: %s (%s)" % (f["id"], f["finding"], f["severity"]) for f in found.values()
           if f["severity"] in ("HIGH", "CRITICAL")]
    assert not bad, "testssl.sh findings:\n" + "\n".join(bad)
