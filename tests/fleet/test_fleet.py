"""Every command on an etcd store (--store): two state folders ("nodes") see each other's
changes; etcd never holds a private key in clear; a wrong or missing store key; a conflict
between two CLIs; etcd stopped; compaction; a damaged value in etcd."""

import concurrent.futures
import json

import fleetlib

CONFLICT = "the fleet store changed meanwhile"


def add_cert(node, files, name, names):
    c, k, thumb, der = files.cert(name, names)
    out = node.ok("add", "cert", c, "key=%s" % k)
    assert thumb in out
    return c, k, thumb, der


def bindings(node):
    return {b["key"]: b for b in node.json("show", "sslcert")["bindings"]}


def test_every_command(fleet):
    a = fleet.node()
    b = fleet.node()
    _, _, t1, _ = add_cert(a, fleet.files, "one", ["www.example.com"])
    a.ok("add", "sslcert", "hostnameport=www.example.com:443", "certhash=" + t1)
    a.ok("add", "sslcert", "ipport=0.0.0.0:443", "certhash=" + t1)
    # b sees them, with the certificate's files in its own state folder.
    certs = b.json("show", "cert")["certs"]
    assert [c["thumbprint"] for c in certs] == [t1]
    key_file = b.state / "keys" / (t1 + ".key")
    assert key_file.exists() and (key_file.stat().st_mode & 0o077) == 0
    assert set(bindings(b)) == {"hostnameport=www.example.com:443", "ipport=0.0.0.0:443"}
    b.ok("update", "sslcert", "hostnameport=www.example.com:443", "disablehttp2=enable")
    assert bindings(a)["hostnameport=www.example.com:443"]["disablehttp2"] == "enable"
    r = a.json("resolve", "ip=127.0.0.1", "port=443", "sni=www.example.com")
    assert "www.example.com" in json.dumps(r)
    rc, out, err = b.run("check", "--json")
    assert rc in (0, 1) and fleetlib.ERR not in err, err
    # deploy a renewal on b: a's binding moves to it.
    c2, k2, t2, _ = fleet.files.cert("two", ["www.example.com"])
    b.ok("deploy", c2, "key=%s" % k2)
    assert bindings(a)["hostnameport=www.example.com:443"]["certhash"] == t2
    # ACME account: set on a, seen on b.
    a.ok("set", "acme", "directory=https://acme.example/dir", "email=ops@example.com",
         "agreetos=yes")
    assert "acme.example" in b.ok("show", "acme")
    # Deletes travel too.
    b.ok("delete", "sslcert", "ipport=0.0.0.0:443")
    assert set(bindings(a)) == {"hostnameport=www.example.com:443"}
    a.ok("delete", "sslcert", "hostnameport=www.example.com:443")
    for t in {t1, t2} & {c["thumbprint"] for c in a.json("show", "cert")["certs"]}:
        a.ok("delete", "cert", t)
    assert b.json("show", "cert")["certs"] == []
    assert not (b.state / "keys" / (t1 + ".key")).exists()
    assert a.rows() == b.rows()


def test_no_private_key_in_clear(fleet):
    a = fleet.node()
    _, k, t, der = add_cert(a, fleet.files, "one", ["a.example.com"])
    a.ok("set", "acme", "directory=https://acme.example/dir", "email=ops@example.com",
         "eabkid=kid1", "eabhmackey=c2VjcmV0LWhtYWMta2V5LWJ5dGVz")
    dump = fleet.etcd.ctl("get", "--prefix", fleet.prefix + "/").stdout
    assert fleet.prefix.encode() + b"/cert/" + t.encode() in dump
    assert b"PRIVATE KEY" not in dump
    assert der not in dump and der[-32:] not in dump
    assert k.read_bytes() not in dump
    assert b"c2VjcmV0LWhtYWMta2V5LWJ5dGVz" not in dump
    assert b"sealed" in dump


def test_wrong_or_missing_store_key(fleet):
    a = fleet.node()
    add_cert(a, fleet.files, "one", ["a.example.com"])
    other = fleet.files.store_key("other.key")
    b = fleet.node(key=other)
    msg = b.fails(1, "show", "sslcert")
    assert "not this fleet's" in msg and "another store key" in msg
    assert not (b.state / "certs").exists() or not list((b.state / "certs").iterdir())
    # Without a key: reading works (certificates wait for the key), a key cannot be added.
    c = fleet.node(key=None)
    c.ok("show", "sslcert")
    assert c.json("show", "cert")["certs"] == []
    cc, ck, _, _ = fleet.files.cert("two", ["b.example.com"])
    msg = c.fails(1, "add", "cert", cc, "key=%s" % ck)
    assert "--store-key" in msg
    # Given the key later, the node catches up on what it left out.
    c.key = fleet.key
    assert len(c.json("show", "cert")["certs"]) == 1
    # A key file open to others is refused, and its bytes are never printed.
    loose = fleet.files.store_key("loose.key", data=b"0123456789abcdef0123456789abcdef")
    loose.chmod(0o644)
    d = fleet.node(key=loose)
    rc, out, err = d.run("show", "sslcert")
    assert rc == 1 and "chmod 600" in err and "0123456789abcdef" not in out + err


def test_user_stays_on_the_node(fleet):
    a = fleet.node()
    a.ok("show", "sslcert")
    rc, out, err = a.run("set", "user=root")
    assert rc == 0, err
    assert not any("/setting/user" in k for k in fleet.values())


def test_conflict_one_fails_nothing_half_written(fleet):
    a = fleet.node()
    b = fleet.node()
    _, _, t, _ = add_cert(a, fleet.files, "one", ["c.example.com"])
    a.ok("add", "sslcert", "hostnameport=c.example.com:443", "certhash=" + t)
    b.ok("show", "sslcert")
    seen = 0
    for i in range(30):
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            fa = ex.submit(a.run, "update", "sslcert", "hostnameport=c.example.com:443",
                           "backend=127.0.0.1:%d" % (1000 + i))
            fb = ex.submit(b.run, "update", "sslcert", "hostnameport=c.example.com:443",
                           "backend=127.0.0.1:%d" % (2000 + i))
            ra, rb = fa.result(), fb.result()
        for rc, out, err in (ra, rb):
            assert rc in (0, 1), err
            if rc == 1:
                assert CONFLICT in err, err
        assert ra[0] == 0 or rb[0] == 0, (ra, rb)
        if ra[0] == 1 or rb[0] == 1:
            seen += 1
            # The loser's replica holds no half of it; after a sync both agree with etcd.
            winner = "127.0.0.1:%d" % ((1000 if ra[0] == 0 else 2000) + i)
            assert bindings(a)["hostnameport=c.example.com:443"]["backend"] == winner
            assert bindings(b)["hostnameport=c.example.com:443"]["backend"] == winner
            break
    assert seen, "no two updates overlapped in 30 tries"
    assert a.rows() == b.rows()


def test_etcd_stopped(own_fleet):
    a = own_fleet.node()
    _, _, t, _ = add_cert(a, own_fleet.files, "one", ["d.example.com"])
    a.ok("add", "sslcert", "hostnameport=d.example.com:443", "certhash=" + t)
    before = a.dump()
    values = own_fleet.values()
    own_fleet.etcd.stop()
    msg = a.fails(1, "update", "sslcert", "hostnameport=d.example.com:443", "disablehttp2=enable")
    assert "etcd unreachable" in msg and "nothing changed" in msg
    a.fails(1, "delete", "sslcert", "hostnameport=d.example.com:443")
    assert a.dump() == before
    # Reading answers from the replica, saying so.
    rc, out, err = a.run("show", "sslcert")
    assert rc == 0 and "hostnameport=d.example.com:443" in out
    assert fleetlib.WARN in err and "replica" in err and "s ago" in err
    # A node that never synced has nothing to answer with.
    fresh = own_fleet.node()
    assert "never synced" in fresh.fails(1, "show", "sslcert")
    own_fleet.etcd.start(state="existing")
    assert own_fleet.values() == values
    a.ok("update", "sslcert", "hostnameport=d.example.com:443", "disablehttp2=enable")


def test_compaction_full_resync(own_fleet):
    a = own_fleet.node()
    b = own_fleet.node()
    _, _, t, _ = add_cert(a, own_fleet.files, "one", ["e.example.com"])
    a.ok("add", "sslcert", "hostnameport=e.example.com:443", "certhash=" + t)
    b.ok("show", "sslcert")
    for i in range(5):
        a.ok("add", "sslcert", "hostnameport=e%d.example.com:443" % i, "certhash=" + t)
    a.ok("delete", "sslcert", "hostnameport=e.example.com:443")
    own_fleet.etcd.ctl("compact", str(own_fleet.etcd.revision()))
    b.ok("show", "sslcert")
    assert a.rows() == b.rows()
    assert "hostnameport=e.example.com:443" not in bindings(b)


def test_damaged_value(fleet):
    a = fleet.node()
    _, _, t, _ = add_cert(a, fleet.files, "one", ["f.example.com"])
    a.ok("add", "sslcert", "hostnameport=f.example.com:443", "certhash=" + t)
    for key, value in (("binding/hostnameport=junk.example.com:443", "{not json"),
                       ("binding/hostnameport=arr.example.com:443", "[1,2]"),
                       ("binding/hostnameport=row.example.com:443",
                        '{"v":1,"row":{"key":"hostnameport=row.example.com:443","flags":"x"}}'),
                       ("binding/hostnameport=other.example.com:443",
                        '{"v":1,"row":{"key":"hostnameport=f.example.com:443"}}'),
                       ("cert/" + "A" * 40, '{"v":1}'),
                       ("setting/x", '{"v":1,"row":{"name":"x","value":{"sealed":"!!"}}}'),
                       # Sealed bytes that do not open, under the fleet's right key: damaged.
                       ("challenge/x.example.com",
                        '{"v":1,"row":{"name":"x.example.com","cert_pem":"x","expires":1,'
                        '"key_pem":{"sealed":"Y2JzMQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}}')):
        fleet.etcd.ctl("put", "%s/%s" % (fleet.prefix, key), value)
    b = fleet.node()
    rc, out, err = b.run("check", "--json")
    assert rc == 1, err
    findings = json.loads(out)["findings"]
    damaged = {k for f in findings if f["code"] == "store-damaged" for k in f["bindings"]}
    assert {"hostnameport=junk.example.com:443", "hostnameport=arr.example.com:443",
            "hostnameport=row.example.com:443",
            "hostnameport=other.example.com:443"} <= damaged, findings
    # The good binding is whole on both nodes (listing every binding fails on a damaged one,
    # as it does on a damaged SQLite row).
    for n in (a, b):
        one = n.json("show", "sslcert", "hostnameport=f.example.com:443")
        assert t in json.dumps(one)
    # Deleting the damaged binding repairs the store everywhere.
    for k in ("junk", "arr", "row", "other"):
        a.ok("delete", "sslcert", "hostnameport=%s.example.com:443" % k)
    assert set(bindings(b)) == {"hostnameport=f.example.com:443"}


def test_batch(fleet):
    """certbind -f on an etcd store: one etcd transaction for the whole file; one larger than
    etcd takes in a transaction fails whole, saying so."""
    a = fleet.node()
    b = fleet.node()
    _, _, t, _ = add_cert(a, fleet.files, "one", ["g.example.com"])
    small = fleet.files.dir / "small.txt"
    small.write_text("".join("add sslcert hostnameport=g%d.example.com:443 certhash=%s\n" % (i, t)
                             for i in range(100)))
    a.ok("-f", small)
    assert len(bindings(b)) == 100
    big = fleet.files.dir / "big.txt"
    big.write_text("".join("add sslcert hostnameport=h%d.example.com:443 certhash=%s\n" % (i, t)
                           for i in range(200)))
    before = fleet.values()
    msg = a.fails(1, "-f", big)
    assert "max-txn-ops" in msg and "nothing changed" in msg
    assert fleet.values() == before
    assert len(bindings(a)) == 100
