"""Moving from Windows: `certbind import netsh FILE` and `certbind import iis FILE`."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("CERTBIND_BIN", os.path.join(REPO, "build", "certbind"))

NETSH = """
SSL Certificate bindings:
-------------------------

    IP:port                      : 0.0.0.0:443
    Certificate Hash             : {default}
    Application ID               : {{4dc3e181-e14b-4a21-b022-59fc669b0914}}
    Certificate Store Name       : MY
    Verify Client Certificate Revocation : Enabled
    Verify Revocation Using Cached Client Certificate Only : Disabled
    Usage Check                  : Enabled
    Revocation Freshness Time    : 0
    URL Retrieval Timeout        : 0
    Ctl Identifier               : (null)
    Ctl Store Name               : (null)
    DS Mapper Usage              : Disabled
    Negotiate Client Certificate : Disabled
    Reject Connections           : Disabled
    Disable HTTP2                : Not Set
    Disable QUIC                 : Not Set
    Disable TLS1.2               : Not Set
    Disable TLS1.3               : Not Set
    Disable OCSP Stapling        : Not Set
    Enable Token Binding         : Not Set
    Log Extended Events          : Not Set
    Disable Legacy TLS Versions  : Set
    Enable Session Ticket        : Not Set

    Hostname:port                : www.example.com:443
    Certificate Hash             : {www}
    Application ID               : {{4dc3e181-e14b-4a21-b022-59fc669b0914}}
    Certificate Store Name       : My
    Negotiate Client Certificate : Enabled
    Disable HTTP2                : Set
    Disable TLS1.2               : Set

    IP:port                      : [2001:db8::5]:8443
    Certificate Hash             : {missing}
    Application ID               : {{4dc3e181-e14b-4a21-b022-59fc669b0914}}
    Certificate Store Name       : MY

"""

IIS = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <system.applicationHost>
    <sites>
      <site name="Default Web Site" id="1">
        <bindings>
          <binding protocol="http" bindingInformation="*:80:" />
          <binding protocol="https" bindingInformation="*:443:" sslFlags="0" />
          <binding protocol="https" bindingInformation="*:443:www.example.com" sslFlags="1" />
        </bindings>
      </site>
      <site name="Shop" id="2">
        <bindings>
          <binding protocol="https" bindingInformation="192.0.2.7:8443:" />
          <binding protocol="https" bindingInformation="[2001:db8::5]:443:" />
          <binding protocol="https" bindingInformation="*:443:" sslFlags="3" />
        </bindings>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def run(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="cb-import-")
    state = os.path.join(d, "state")
    thumbs = {}
    for name in ("default", "www"):
        cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-subj", "/CN=%s.example.com" % name, "-addext",
                        "subjectAltName=DNS:%s.example.com" % name, "-days", "30"],
                       check=True, capture_output=True)
        rc, out, err = run("--state", state, "add", "cert", cert, "key=" + key)
        assert rc == 0, err
        thumbs[name] = out.strip()
    yield d, state, thumbs
    shutil.rmtree(d, ignore_errors=True)


def write(d, name, text, crlf=False):
    path = os.path.join(d, name)
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", "\r\n") if crlf else text)
    return path


def bindings(state):
    rc, out, err = run("--state", state, "show", "sslcert", "--json")
    assert rc == 0, err
    return {b["key"]: b for b in json.loads(out)["bindings"]}


def dump(state):
    return subprocess.run(["sqlite3", os.path.join(state, "certbind.db"), ".dump"],
                          capture_output=True, text=True).stdout


@pytest.mark.parametrize("crlf", [False, True])
def test_netsh_creates_the_same_bindings_and_names_missing_certificates(env, crlf):
    d, state, t = env
    missing = "AB" * 20
    # Windows prints thumbprints in lower case.
    path = write(d, "netsh.txt", NETSH.format(default=t["default"].lower(), www=t["www"].lower(),
                                              missing=missing.lower()), crlf)
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 1  # one binding waits for its certificate
    assert missing in err and "certbind add cert" in err
    b = bindings(state)
    assert set(b) == {"ipport=0.0.0.0:443", "hostnameport=www.example.com:443"}
    assert b["ipport=0.0.0.0:443"]["certhash"] == t["default"]
    assert b["ipport=0.0.0.0:443"]["appid"] == "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
    assert b["ipport=0.0.0.0:443"]["disablelegacytls"] == "enable"
    assert b["ipport=0.0.0.0:443"]["disablehttp2"] == "disable"
    w = b["hostnameport=www.example.com:443"]
    assert (w["certhash"], w["clientcertnegotiation"], w["disablehttp2"], w["disabletls12"]) == (
        t["www"], "enable", "enable", "enable")
    # Running it again keeps what exists and adds nothing twice.
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 1 and "exists" in out
    assert len(bindings(state)) == 2


def test_netsh_preview_changes_nothing(env):
    d, state, t = env
    path = write(d, "netsh.txt", NETSH.format(default=t["default"], www=t["www"], missing=t["www"]))
    before = dump(state)
    rc, out, err = run("--state", state, "import", "netsh", path, "preview=yes", "--json")
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["preview"] is True
    assert [p["status"] for p in plan["bindings"]] == ["add", "add", "add"]
    assert dump(state) == before


@pytest.mark.parametrize("text,line", [
    ("    IP:port : 0.0.0.0:443\n    this is not netsh\n", 2),
    ("    Certificate Hash : " + "AB" * 20 + "\n", 1),
    ("\n\n    IP:port : 0.0.0.0:99999\n", 3),
    ("    IP:port : 0.0.0.0:443\n    Certificate Hash : xyz\n", 2),
    ("    IP:port : 0.0.0.0:443\n    Certificate Hash : " + "AB" * 20 + "\n    Disable HTTP2 : Maybe\n", 3),
    ("    Hostname:port : bad name!:443\n", 1),
    ("    IP:port : 0.0.0.0:443\n    Certificate Hash : " + "AB" * 20 + "\n\n"
     "    IP:port : 0.0.0.0:443\n    Certificate Hash : " + "AB" * 20 + "\n", 4),
    ("    IP:port : 0.0.0.0:443\n", 1),  # no certificate hash
])
def test_netsh_refuses_malformed_input_with_the_line_number(env, text, line):
    d, state, t = env
    before = dump(state)
    rc, out, err = run("--state", state, "import", "netsh", write(d, "bad.txt", text))
    assert rc == 2, err
    assert err.startswith("certbind: error: ") and ("line %d:" % line) in err, err
    assert dump(state) == before


def test_netsh_empty_and_binary_input(env):
    d, state, t = env
    assert run("--state", state, "import", "netsh", write(d, "e.txt", ""))[0] == 2
    with open(os.path.join(d, "bin.txt"), "wb") as f:
        f.write(b"\x00\x01\x02IP:port : \xff\n")
    assert run("--state", state, "import", "netsh", os.path.join(d, "bin.txt"))[0] == 2
    assert run("--state", state, "import", "netsh", os.path.join(d, "nope.txt"))[0] == 2


def test_netsh_ccs_needs_its_folder(env):
    d, state, t = env
    path = write(d, "ccs.txt", "    Central Certificate Store : 443\n    Certificate Store Name : (null)\n")
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 2 and "ccspath=" in err
    rc, out, err = run("--state", state, "import", "netsh", path, "ccspath=/srv/ccs")
    assert rc == 0, err
    assert bindings(state)["ccs=443"]["ccspath"] == "/srv/ccs"


def test_iis_preview_lists_the_https_bindings(env):
    d, state, t = env
    rc, out, err = run("--state", state, "import", "iis", write(d, "applicationHost.config", IIS),
                       "preview=yes", "--json")
    assert rc == 0, err
    got = [(b["binding"], b["site"]) for b in json.loads(out)["bindings"]]
    assert got == [("ipport=0.0.0.0:443", "Default Web Site"),
                   ("hostnameport=www.example.com:443", "Default Web Site"),
                   ("ipport=192.0.2.7:8443", "Shop"),
                   ("ipport=[2001:db8::5]:443", "Shop"),
                   ("ccs=443", "Shop")]
    rc, out, err = run("--state", state, "import", "iis", os.path.join(d, "applicationHost.config"),
                       "preview=yes")
    assert "line 9" in out and "certbind add sslcert hostnameport=www.example.com:443" in out


def test_iis_needs_preview_and_refuses_malformed_xml_with_the_line(env):
    d, state, t = env
    path = write(d, "applicationHost.config", IIS)
    rc, out, err = run("--state", state, "import", "iis", path)
    assert rc == 2 and "preview=yes" in err
    broken = IIS.replace("</sites>", "</site>")
    rc, out, err = run("--state", state, "import", "iis", write(d, "b.config", broken), "preview=yes")
    assert rc == 2 and "line 19:" in err and err.count("\n") == 1, err
    bad = IIS.replace('bindingInformation="192.0.2.7:8443:"', 'bindingInformation="192.0.2.7"')
    rc, out, err = run("--state", state, "import", "iis", write(d, "c.config", bad), "preview=yes")
    assert rc == 2 and "line 14" in err, err
    rc, out, err = run("--state", state, "import", "iis", write(d, "d.config", "<configuration/>"),
                       "preview=yes")
    assert rc == 2 and "no https" in err


def test_iis_bad_encoding_is_one_error_line(env):
    d, state, t = env
    path = os.path.join(d, "enc.config")
    with open(path, "wb") as f:
        f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<configuration>\xf4 <site/></configuration>\n')
    rc, out, err = run("--state", state, "import", "iis", path, "preview=yes")
    assert rc == 2 and "line 2:" in err
    assert err.count("\n") == 1 and err.startswith("certbind: error: "), err
