"""Bad ACME input is refused before anything is stored (design section 7): a directory
that is not https, and acme=enable on a key without a name. No serve, no Pebble."""

import json

import pytest

from conftest import new_state

ERR = "certbind: error: "


@pytest.fixture
def st(request, workdir, service_user):
    return new_state(workdir, request.node.name, service_user)


def show_acme(st):
    rc, out, err = st.run("--json", "show", "acme", check=False)
    return rc, (json.loads(out) if rc == 0 else None)


def test_a_directory_that_is_not_https_is_refused_and_nothing_stored(st, tls):
    bad = "http://127.0.0.1:14000/dir"
    rc, out, err = st.run("set", "acme", "directory=%s" % bad, "email=ops@acme.test",
                          "agreetos=yes", check=False)
    assert rc == 2, (rc, out, err)
    assert err.startswith(ERR) and "https://" in err, err
    assert show_acme(st)[0] != 0  # no account was stored
    good = "https://127.0.0.1:14000/dir"
    st.run("set", "acme", "directory=%s" % good, "email=ops@acme.test", "agreetos=yes",
           "cafile=%s" % tls.cafile)
    rc, before = show_acme(st)
    assert rc == 0 and before["account"]["directory"] == good
    for words in (["directory=%s" % bad], ["directory=%s" % bad, "email=other@acme.test"],
                  ["email=other@acme.test", "directory=ftp://127.0.0.1/dir"]):
        rc, out, err = st.run("set", "acme", *words, check=False)
        assert rc == 2, (words, rc, out, err)
        assert show_acme(st)[1] == before, words  # all or nothing: the email is unchanged


def test_acme_on_an_address_key_is_refused(st):
    st.run("set", "acme", "directory=https://127.0.0.1:14000/dir", "email=ops@acme.test",
           "agreetos=yes")
    for key in ("ipport=127.0.0.1:8443", "ipport=0.0.0.0:8443", "ipport=[::1]:8443"):
        rc, out, err = st.run("add", "sslcert", key, "acme=enable", check=False)
        assert rc == 2, (key, rc, out, err)
        assert "needs a name" in err, err
    _, out, _ = st.run("--json", "show", "sslcert")
    assert json.loads(out)["bindings"] == []
    assert show_acme(st)[1]["bindings"] == []
