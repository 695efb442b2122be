"""Global flags, command words and the shape of failures (bindings.md section 4)."""

import json

import pytest

from conftest import ERR, assert_one_error, each


def test_help_and_version(cb):
    rc, out, err = cb.run("--help")
    assert rc == 0 and err == ""
    for word in ("add cert", "show cert", "delete cert", "add sslcert", "update sslcert",
                 "delete sslcert", "show sslcert", "resolve", "set user="):
        assert word in out
    rc2, out2, _ = cb.run("show", "sslcert", "-h")
    assert rc2 == 0 and out2 == out
    rc, out, err = cb.run("--version")
    assert rc == 0 and out.startswith("certbind ") and err == ""
    assert not cb.state.exists(), "--help/--version created the state folder"


def test_no_command_is_one_error_line(cb):
    cb.fails(2)


MALFORMED = [
    ["frobnicate"],
    ["add"],
    ["add", "certificate", "x.pem"],
    ["show", "sslcerts"],
    ["resolve", "now", "ip=1.2.3.4", "port=443"],
    ["set", "service", "user=nobody"],
    ["show", "sslcert", "--frob"],
    ["show", "sslcert", "--json=yes"],
    ["show", "sslcert", "--verbose"],
    ["show", "sslcert", "--workers", "0"],
]


def test_malformed_command_line(cb, bound):
    each(MALFORMED, lambda args: cb.fails(2, *args))
    # --state as the last word, or empty ($CERTBIND_STATE still names this test's folder)
    cb.fails(2, "show", "sslcert", "--state", state=False)
    cb.fails(2, "show", "sslcert", "--state=", state=False)


def test_unknown_option_names_the_allowed_ones(cb, bound):
    msg = cb.fails(2, "delete", "sslcert", "ipport=1.2.3.4:443", "certhash=" + bound.thumbprint)
    assert "certhash" in msg and "ipport" in msg


TWICE = [
    ["add", "sslcert", "ipport=1.2.3.4:443", "certhash=%(t)s", "certhash=%(t)s"],
    ["add", "sslcert", "ipport=1.2.3.4:443", "certhash=%(t)s", "CertHash=%(t)s"],
    ["add", "sslcert", "ipport=1.2.3.4:443", "ipport=1.2.3.4:443", "certhash=%(t)s"],
    ["resolve", "ip=1.2.3.4", "ip=1.2.3.5", "port=443"],
    ["set", "user=nobody", "user=root"],
    ["delete", "cert", "%(t)s", "force=yes", "force=yes"],
    ["add", "cert", "x.pem", "key=a", "key=b"],
]


def test_option_given_twice(cb, bound):
    each(TWICE, lambda args: cb.fails(2, *[a % {"t": bound.thumbprint} for a in args],
                                      match="twice"))


def test_json_anywhere_on_the_line(cb, bound):
    cb.ok("add", "sslcert", "ipport=1.2.3.4:443", "certhash=" + bound.thumbprint)
    outs = []
    for args in (["--json", "show", "sslcert"], ["show", "--json", "sslcert"],
                 ["show", "sslcert", "--json"], ["show", "sslcert", "--json", "--json"]):
        rc, out, err = cb.run(*args)
        assert rc == 0 and err == ""
        outs.append(out)
    assert len(set(outs)) == 1
    assert json.loads(outs[0])["bindings"][0]["key"] == "ipport=1.2.3.4:443"
    rc, out, _ = cb.run("--json", "show", "cert", bound.thumbprint.lower())
    assert rc == 0 and json.loads(out)["certs"][0]["thumbprint"] == bound.thumbprint
    rc, out, _ = cb.run("resolve", "--json", "ip=1.2.3.4", "port=443")
    assert rc == 0 and json.loads(out)["rule"] == "ip"


def test_state_folder_from_flag_or_environment(cb, certs, tmp_path):
    c = certs.make()
    other = tmp_path / "other-state"
    # --state DIR, --state=DIR and $CERTBIND_STATE all name the folder.
    rc, out, err = cb.run("add", "cert", c.bundle_path, "--state=%s" % other, state=False)
    assert rc == 0 and out == c.thumbprint + "\n"
    rc, out, _ = cb.run("show", "cert", "--json", state=False,
                        env=cb.env(CERTBIND_STATE=str(other)))
    assert rc == 0 and json.loads(out)["certs"][0]["thumbprint"] == c.thumbprint
    rc, out, _ = cb.run("--state", other, "show", "cert", "--json", state=False)
    assert rc == 0 and json.loads(out)["certs"][0]["thumbprint"] == c.thumbprint
    # The flag wins over the environment.
    assert cb.json("show", "cert") == {"certs": []}
    assert not cb.state.exists()


def test_failure_prints_nothing_on_stdout_with_json(cb, bound):
    rc, out, err = cb.run("show", "sslcert", "ipport=9.9.9.9:443", "--json")
    assert rc == 1 and out == ""
    assert_one_error(err)
    assert err.startswith(ERR)


def test_empty_state_lists_nothing(cb):
    assert cb.json("show", "cert") == {"certs": []}
    assert cb.json("show", "sslcert") == {"bindings": []}
    assert "No certificates" in cb.ok("show", "cert")
    assert "No bindings" in cb.ok("show", "sslcert")
    assert not cb.state.exists(), "reading created the state folder"
