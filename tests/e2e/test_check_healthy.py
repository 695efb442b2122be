"""`certbind check` and `serve` agree: every binding that check calls healthy (named in
no error finding) serves its own certificate to a real client."""
import json
import os

import cbe2e
from cbe2e import served_thumb


def client_for(key):
    """(address, port, sni) of a client that this binding answers."""
    kind, rest = key.split("=", 1)
    host, port = rest.rsplit(":", 1)
    port = int(port)
    if kind == "hostnameport":
        return "127.0.0.1", port, host.replace("*", "any", 1)
    if host == "0.0.0.0":
        return "127.0.0.9", port, None  # an address with no IP binding of its own
    return host.strip("[]"), port, None


def test_every_healthy_binding_serves_its_certificate(st, pki):
    p1, p2, p3, p4 = (cbe2e.free_port() for _ in range(4))
    www = pki.get("www.hc.test")
    api = pki.get("api.hc.test")
    wild = pki.get("wild.hc.test", names=["*.wild.hc.test"])
    dflt = pki.get("default.hc.test")
    other = pki.get("other.hc.test")
    broken = pki.get("broken.hc.test")
    for c in (www, api, wild, dflt, other, broken):
        st.add_cert(c)
    # Healthy bindings.
    st.add("hostnameport=www.hc.test:%d" % p1, www)
    st.add("hostnameport=*.wild.hc.test:%d" % p1, wild)
    st.add("ipport=0.0.0.0:%d" % p1, dflt)
    st.add("ipport=127.0.0.3:%d" % p2, other)
    st.add("hostnameport=api.hc.test:%d" % p3, api)
    st.add("ipport=0.0.0.0:%d" % p3, dflt)
    # Unhealthy ones: a name the certificate does not cover, an IP binding that hides
    # the SNI bindings of its port, and a key that is gone.
    st.add("hostnameport=shop.hc.test:%d" % p1, www)
    st.add("ipport=127.0.0.4:%d" % p3, other, force="yes")
    st.add("hostnameport=broken.hc.test:%d" % p4, broken, force="yes")
    os.unlink(st.key_file(broken.thumb))

    rc, out, _ = st.run("--json", "check", check=False)
    assert rc == 1
    findings = json.loads(out)["findings"]
    unhealthy = {b for f in findings if f["severity"] == "error" for b in f["bindings"]}
    assert {"hostnameport=shop.hc.test:%d" % p1, "ipport=127.0.0.4:%d" % p3,
            "hostnameport=broken.hc.test:%d" % p4} <= unhealthy

    _, out, _ = st.run("--json", "show", "sslcert")
    bindings = {b["key"]: b["certhash"] for b in json.loads(out)["bindings"]}
    healthy = {k: v for k, v in bindings.items() if k not in unhealthy}
    assert len(healthy) >= 5, healthy

    st.serve(workers=1).start()
    for key, certhash in sorted(healthy.items()):
        addr, port, sni = client_for(key)
        assert served_thumb(addr, port, sni) == certhash, key
        # And resolve tells the same story.
        res = st.resolve(addr, port, sni)
        assert res["binding"] == key and res["usable"] is True, (key, res)
