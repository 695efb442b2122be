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


# --- Exports as Windows Server writes them -------------------------------------------------
#
# tests/migrate/data/netsh-wsYEAR.*.txt: `netsh http show sslcert` on Windows Server 2016,
# 2019, 2022 and newer (2025 / Windows 11), each saved three ways: UTF-16LE with a BOM and
# CRLF (Windows PowerShell 5.1's `>`), UTF-8 with a BOM and CRLF (Out-File -Encoding utf8),
# UTF-8 with LF. Their thumbprints stand for the two certificates of the `env` fixture.

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
EXPORT_DEFAULT = "5f0c8a3b9e2d47a1c6f8e0b2d4a6c8e1f3a5b7c9"
EXPORT_WWW = "a41e6d2c8b9f03e7d5c1b8a2f4e6d0c9b7a5e3f1"
IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
TOGGLES = ("disablehttp2", "disabletls12", "disabletls13", "disablelegacytls",
           "clientcertnegotiation", "enablesessionticket", "disableocspstapling", "reject")
ENCODINGS = {"utf16le-bom-crlf": "utf-16-le", "utf8-bom-crlf": "utf-8", "utf8": "utf-8"}

# What each export holds: key -> (certificate, appid, toggles set to enable).
EXPECTED = {
    "ws2016": {
        "ipport=0.0.0.0:443": ("default", IIS_APPID, set()),
        "hostnameport=www.example.com:443": ("www", IIS_APPID,
                                             {"clientcertnegotiation", "disablehttp2"}),
        "ipport=192.0.2.10:8443": ("default", "{b46ab86f-c090-1a64-f966-ba2e0b30b1d7}", set()),
    },
    "ws2019": {
        "ipport=0.0.0.0:443": ("default", IIS_APPID, {"disablelegacytls"}),
        "hostnameport=www.example.com:443": ("www", IIS_APPID, {"disableocspstapling"}),
        "ccs=443": (None, IIS_APPID, set()),
        "ipport=[::]:443": ("default", IIS_APPID, {"disablehttp2"}),
    },
    "ws2022": {
        "ipport=0.0.0.0:443": ("default", IIS_APPID, {"disablelegacytls"}),
        "hostnameport=www.example.com:443": ("www", IIS_APPID, {"disablehttp2", "disabletls13",
                                                                "enablesessionticket"}),
        "ipport=[2001:db8::5]:443": ("default", IIS_APPID, {"reject"}),
        "ccs=8443": (None, IIS_APPID, {"disabletls12"}),
    },
    "ws2025": {
        "ipport=0.0.0.0:443": ("default", IIS_APPID, {"disablelegacytls"}),
        "hostnameport=www.example.com:443": ("www", IIS_APPID, {"clientcertnegotiation",
                                                                "enablesessionticket"}),
    },
}


def export(d, t, version, encoding, name=None):
    """The export as Windows wrote it, with the env fixture's thumbprints put in (in the
    file's own encoding, so its BOM, line ends and code units stay as they are)."""
    with open(os.path.join(DATA, "netsh-%s.%s.txt" % (version, encoding)), "rb") as f:
        data = f.read()
    codec = ENCODINGS[encoding]
    for old, new in ((EXPORT_DEFAULT, t["default"]), (EXPORT_WWW, t["www"])):
        assert old.encode(codec) in data
        data = data.replace(old.encode(codec), new.lower().encode(codec))
    path = os.path.join(d, name or "bindings-%s-%s.txt" % (version, encoding))
    with open(path, "wb") as f:
        f.write(data)
    return path


def check_bindings(state, t, version):
    got = bindings(state)
    want = EXPECTED[version]
    assert set(got) == set(want)
    for key, (cert, appid, enabled) in want.items():
        b = got[key]
        assert b["certhash"] == (t[cert] if cert else None), key
        assert b["appid"] == appid, key
        assert b.get("ccspath") == ("/srv/ccs" if key.startswith("ccs=") else None), key
        assert {o for o in TOGGLES if b[o] == "enable"} == enabled, key


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_netsh_reads_each_windows_server_export(env, version, encoding):
    d, state, t = env
    path = export(d, t, version, encoding)
    rc, out, err = run("--state", state, "import", "netsh", path, "ccspath=/srv/ccs")
    assert rc == 0, err
    assert err == ""  # every field these versions print is known: nothing to warn about
    check_bindings(state, t, version)


def test_netsh_reads_utf16be_and_utf16_without_bom(env):
    d, state, t = env
    text = open(export(d, t, "ws2022", "utf8"), encoding="utf-8").read().replace("\n", "\r\n")
    variants = {"be.txt": b"\xfe\xff" + text.encode("utf-16-be"),
                "le-nobom.txt": text.encode("utf-16-le"),
                "be-nobom.txt": text.encode("utf-16-be")}
    for name, data in variants.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        rc, out, err = run("--state", state, "import", "netsh", os.path.join(d, name),
                           "ccspath=/srv/ccs", "preview=yes", "--json")
        assert rc == 0, (name, err)
        assert {b["binding"] for b in json.loads(out)["bindings"]} == set(EXPECTED["ws2022"]), name


@pytest.mark.parametrize("line_end", ["\r", "\r\r\n"])
def test_netsh_reads_cr_and_doubled_cr_line_ends(env, line_end):
    d, state, t = env
    text = open(export(d, t, "ws2019", "utf8"), encoding="utf-8").read()
    path = write(d, "cr.txt", text.replace("\n", line_end))
    rc, out, err = run("--state", state, "import", "netsh", path, "ccspath=/srv/ccs")
    assert rc == 0, err
    check_bindings(state, t, "ws2019")


UNKNOWN = """
SSL Certificate bindings:
-------------------------

    IP:port                      : 0.0.0.0:443
    Certificate Hash             : {default}
    Application ID               : {{4dc3e181-e14b-4a21-b022-59fc669b0914}}
    Disable Legacy TLS Versions  : Set
    Enable Client Certificate Negotiation : Set
    Disable Post-Quantum Key Exchange : Not Set
 Extended Properties:
    PropertyId                   : 2
    PerfSetting                  : 1
    Name                         : SendBufferingFlags
 Extended Properties:
    PropertyId                   : 5
    PerfSetting                  : 0
 Trusted Issuers:
    Name                         : Contoso Root

    Hostname:port                : www.example.com:443
    Certificate Hash             : {www}
    Enable Client Certificate Negotiation : Not Set
    Disable HTTP2                : Set

"""


def test_netsh_reports_unknown_fields_once_and_imports_the_rest(env):
    d, state, t = env
    path = write(d, "future.txt", UNKNOWN.format(default=t["default"], www=t["www"]), crlf=True)
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 0, err
    lines = err.splitlines()
    assert all(l.startswith("certbind: warning: %s:" % path) for l in lines), err
    # One line per distinct unknown name, naming where it first appears.
    assert [l.split(": unknown field ")[1].split("'")[1] for l in lines] == [
        "Enable Client Certificate Negotiation", "Disable Post-Quantum Key Exchange",
        "PerfSetting", "Name", "Trusted Issuers:"], err
    assert lines[0].startswith("certbind: warning: %s:9: " % path)
    assert "here and on 1 more line" in lines[0]
    assert lines[2].startswith("certbind: warning: %s:13: " % path)
    b = bindings(state)
    assert set(b) == {"ipport=0.0.0.0:443", "hostnameport=www.example.com:443"}
    assert b["ipport=0.0.0.0:443"]["disablelegacytls"] == "enable"
    assert b["ipport=0.0.0.0:443"]["clientcertnegotiation"] == "disable"
    assert b["hostnameport=www.example.com:443"]["disablehttp2"] == "enable"


def test_netsh_many_unknown_fields_stay_a_short_report(env):
    d, state, t = env
    extra = "".join("    Future Field %d : Set\n" % i for i in range(40))
    path = write(d, "many.txt", "    IP:port : 0.0.0.0:443\n    Certificate Hash : %s\n%s"
                 % (t["default"], extra))
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 0, err
    assert len(err.splitlines()) == 17 and "24 more lines with other unknown fields" in err, err


def test_netsh_in_another_language_says_so(env):
    d, state, t = env
    path = write(d, "de.txt", "\nSSL-Zertifikatbindungen:\n-------------------------\n\n"
                 "    IP-Adresse:Port              : 0.0.0.0:443\n"
                 "    Zertifikathash               : %s\n" % t["default"])
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 2 and err.count("\n") == 1, err
    assert "no bindings found" in err and "SSL-Zertifikatbindungen:" in err and "English" in err


def _utf16(text):
    return b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le")


GOOD = "\nSSL Certificate bindings:\n\n    IP:port : 0.0.0.0:443\n    Certificate Hash : %s\n" % (
    "ab" * 20)


@pytest.mark.parametrize("data,says", [
    pytest.param(_utf16(GOOD)[:-1], "odd number of bytes", id="utf16-cut-short"),
    pytest.param(_utf16(GOOD).replace("IP".encode("utf-16-le"), b"\x00\xd8P\x00"),
                 "line 4: not valid UTF-16", id="utf16-lone-high-surrogate"),
    pytest.param(_utf16(GOOD).replace("IP".encode("utf-16-le"), b"\x00\xdcP\x00"),
                 "line 4: not valid UTF-16", id="utf16-lone-low-surrogate"),
    pytest.param(_utf16(GOOD) + b"\x3d\xd8", "line 6: not valid UTF-16",
                 id="utf16-high-surrogate-at-the-end"),
    pytest.param(GOOD.replace("\n", "\r\n").encode("utf-16-le")[:-3], "odd number of bytes",
                 id="utf16-without-bom-cut-short"),
    pytest.param(b"\xff\xfe\x00\x00" + GOOD.encode("utf-32-le"), "UTF-32", id="utf32"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "line 1", id="png"),
    pytest.param(b"    IP:port : 0.0.0.0:443\n    Certificate Hash : \x1b[2J\n",
                 "control character 0x1B", id="terminal-escape"),
    pytest.param(b"\xef\xbb\xbf    IP:port : 0.0.0.0:443\n\x00\x00", "NUL byte", id="utf8-nul"),
    pytest.param(bytes(range(256)) * 4, "line 1", id="all-bytes"),
])
def test_netsh_refuses_broken_encodings_with_one_error_line(env, data, says):
    d, state, t = env
    path = os.path.join(d, "broken.txt")
    with open(path, "wb") as f:
        f.write(data)
    before = dump(state)
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 2, err
    assert err.startswith("certbind: error: %s: " % path) and err.count("\n") == 1, err
    assert says in err, err
    if "UTF-16" in says or "odd" in says:
        assert "UTF-8" in err  # says what to do
    assert dump(state) == before


# `netsh http show iplisten` as Windows prints it (HTTP.sys's IP listen list): node-local,
# so import prints the serve flags that carry it and stores nothing.
IPLISTEN = """
IP addresses present in the IP listen list:
-------------------------------------------

    10.0.0.1
    2001:db8::1
    10.0.0.1

"""


def test_iplisten_alone_prints_the_serve_flags_and_stores_nothing(env):
    d, state, t = env
    before = dump(state)
    for crlf in (False, True):
        rc, out, err = run("--state", state, "import", "netsh", write(d, "ipl.txt", IPLISTEN, crlf))
        assert rc == 0, err
        assert "certbind serve --iplisten 10.0.0.1 --iplisten 2001:db8::1\n" in out, out
        assert dump(state) == before
    rc, out, err = run("--state", state, "--json", "import", "netsh", write(d, "ipl.txt", IPLISTEN))
    assert rc == 0, err
    assert json.loads(out) == {"preview": False, "bindings": [],
                               "iplisten": ["10.0.0.1", "2001:db8::1"]}


def test_iplisten_empty_list(env):
    d, state, t = env
    text = "\nIP addresses present in the IP listen list:\n-------------------------------------------\n\n"
    rc, out, err = run("--state", state, "import", "netsh", write(d, "e.txt", text))
    assert rc == 0, err
    assert "needs no --iplisten" in out
    rc, out, err = run("--state", state, "--json", "import", "netsh", write(d, "e.txt", text))
    assert json.loads(out)["iplisten"] == []


def test_iplisten_with_sslcert_output_in_one_file(env):
    d, state, t = env
    text = IPLISTEN + NETSH.format(default=t["default"], www=t["www"], missing=t["www"])
    rc, out, err = run("--state", state, "--json", "import", "netsh", write(d, "both.txt", text))
    assert rc == 0, err
    plan = json.loads(out)
    assert plan["iplisten"] == ["10.0.0.1", "2001:db8::1"]
    assert [p["status"] for p in plan["bindings"]] == ["add", "add", "add"]
    # And the other way round: the list after the bindings.
    text = NETSH.format(default=t["default"], www=t["www"], missing=t["www"]) + IPLISTEN
    rc, out, err = run("--state", state, "import", "netsh", write(d, "both2.txt", text), "preview=yes")
    assert rc == 0, err
    assert "--iplisten 10.0.0.1 --iplisten 2001:db8::1" in out


@pytest.mark.parametrize("body,line", [
    ("    10.0.0.300\n", 5),
    ("    10.0.0.1\n    host.example\n", 6),
    ("    10.0.0.1:80\n", 5),
    ("    [10.0.0.1]\n", 5),
    ("    fe80::1%eth0\n", 5),
    ("    10.0.0.1\n    garbage here\n", 6),
])
def test_iplisten_refuses_what_is_not_an_address(env, body, line):
    d, state, t = env
    before = dump(state)
    text = "\nIP addresses present in the IP listen list:\n-------------------------------------------\n\n" + body
    rc, out, err = run("--state", state, "import", "netsh", write(d, "bad.txt", text))
    assert rc == 2, (rc, out, err)
    assert err.startswith("certbind: error: ") and ("line %d:" % line) in err, err
    assert err.count("\n") == 1 and out == ""
    assert dump(state) == before


def test_iplisten_too_many_addresses(env):
    d, state, t = env
    text = "IP addresses present in the IP listen list:\n" + "".join(
        "    10.0.%d.%d\n" % (i // 250, i % 250 + 1) for i in range(65))
    rc, out, err = run("--state", state, "import", "netsh", write(d, "many.txt", text))
    assert rc == 2 and "more than 64" in err, err
# -- client certificates: a Certificate Trust List maps to clientca=FILE ------------------

NETSH_CTL = """
    Hostname:port                : www.example.com:443
    Certificate Hash             : {www}
    Application ID               : {{4dc3e181-e14b-4a21-b022-59fc669b0914}}
    Certificate Store Name       : My
    Verify Client Certificate Revocation : Enabled
    Ctl Identifier               : PartnerCAs
    Ctl Store Name               : ClientAuthIssuer
    Negotiate Client Certificate : Enabled

    IP:port                      : 0.0.0.0:443
    Certificate Hash             : {default}
    Verify Client Certificate Revocation : Enabled
    Ctl Identifier               : (null)
    Ctl Store Name               : (null)
    Negotiate Client Certificate : Enabled
"""


def client_ca(d):
    key, cert = os.path.join(d, "clients-ca.key"), os.path.join(d, "clients-ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-subj", "/CN=Partner CA", "-days", "30"], check=True, capture_output=True)
    return cert


def test_netsh_trust_list_without_clientca_is_named_with_the_fix(env):
    d, state, t = env
    path = write(d, "ctl.txt", NETSH_CTL.format(**t))
    rc, out, err = run("--state", state, "import", "netsh", path)
    assert rc == 0, err
    lines = err.splitlines()
    (w,) = lines  # one warning: the binding with a trust list; none for the other
    assert w.startswith("certbind: warning: %s:2: hostnameport=www.example.com:443" % path), w
    assert "PartnerCAs" in w and "clientca=FILE" in w and "not verified" in w, w
    got = bindings(state)
    assert got["hostnameport=www.example.com:443"]["clientca"] is None
    assert got["hostnameport=www.example.com:443"]["clientcertnegotiation"] == "enable"


def test_netsh_trust_list_takes_the_clientca_given(env):
    d, state, t = env
    ca = client_ca(d)
    path = write(d, "ctl.txt", NETSH_CTL.format(**t))
    rc, out, err = run("--state", state, "import", "netsh", path, "clientca=" + ca)
    assert rc == 0, err
    assert "clientca=" + ca in out  # the command it stands for
    (w,) = err.splitlines()  # revocation: checked by Windows, not by certbind
    assert "hostnameport=www.example.com:443" in w and "revocation" in w, w
    got = bindings(state)
    assert got["hostnameport=www.example.com:443"]["clientca"] == ca
    assert got["ipport=0.0.0.0:443"]["clientca"] is None  # no trust list: not given one


@pytest.mark.parametrize("bad", ["missing.pem", "notpem.pem"])
def test_netsh_clientca_must_be_a_ca_file(env, bad):
    d, state, t = env
    write(d, "notpem.pem", "not a certificate\n")
    path = write(d, "ctl.txt", NETSH_CTL.format(**t))
    before = dump(state)
    rc, out, err = run("--state", state, "import", "netsh", path,
                       "clientca=" + os.path.join(d, bad))
    assert rc == 2, err
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("certbind: error: ")
    assert "clientca=" in err
    assert dump(state) == before
