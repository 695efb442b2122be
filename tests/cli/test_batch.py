"""certbind -f FILE: bulk changes in one transaction (bindings.md section 10)."""

import os
import signal
import subprocess

import pytest

from conftest import BIN, ERR, TIMEOUT, assert_one_error, each


def write_batch(cb, text, name="batch.txt"):
    p = cb.home / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def store_files(cb):
    return sorted(str(p.relative_to(cb.state)) for d in ("certs", "keys")
                  for p in (cb.state / d).glob("*"))


@pytest.fixture
def two(cb, certs):
    """Two certificates as bundles (certificate then key in one file)."""
    return certs.make(cn="a.example.com"), certs.make(cn="b.example.com")


# -- success ------------------------------------------------------------------------------

def test_batch_runs_every_line_and_prints_one_summary(cb, two):
    a, b = two
    batch = write_batch(cb, "\n".join([
        "add cert %s %s" % (a.bundle_path, b.bundle_path),
        "add sslcert hostnameport=a.example.com:443 certhash=%s" % a.thumbprint,
        "add sslcert hostnameport=b.example.com:443 certhash=%s backend=127.0.0.1:8080"
        % b.thumbprint,
        "update sslcert hostnameport=b.example.com:443 disablehttp2=enable",
        "add sslcert ipport=0.0.0.0:8443 certhash=%s" % a.thumbprint,
        "delete sslcert ipport=0.0.0.0:8443",
    ]) + "\n")
    rc, out, err = cb.run("-f", batch)
    assert rc == 0, err
    assert err == ""
    assert out == ("Ran 6 commands from %s: certificates 2 added, 0 deleted; bindings 3 added, "
                   "1 updated, 1 deleted.\n" % batch)
    assert sorted(c["thumbprint"] for c in cb.certs()) == sorted([a.thumbprint, b.thumbprint])
    bs = {x["key"]: x for x in cb.bindings()}
    assert sorted(bs) == ["hostnameport=a.example.com:443", "hostnameport=b.example.com:443"]
    assert bs["hostnameport=b.example.com:443"]["disablehttp2"] == "enable"
    assert bs["hostnameport=b.example.com:443"]["backend"] == "127.0.0.1:8080"


def test_batch_summary_as_json_and_certificates_already_present(cb, two):
    a, b = two
    cb.add_cert(a, native=True)
    batch = write_batch(cb, "add cert %s\nadd cert %s\ndelete cert %s\n"
                        % (a.bundle_path, b.bundle_path, a.thumbprint))
    assert cb.json("-f", batch) == {
        "file": str(batch), "commands": 3,
        "certs": {"added": 1, "present": 1, "deleted": 1},
        "bindings": {"added": 0, "updated": 0, "deleted": 0}}
    assert [c["thumbprint"] for c in cb.certs()] == [b.thumbprint]
    assert store_files(cb) == ["certs/%s.pem" % b.thumbprint, "keys/%s.key" % b.thumbprint]


def test_comments_blank_lines_quoting_and_crlf(cb, certs):
    c = certs.make(cn="q.example.com")
    spaced = certs.write("with space's.pem", c.pem + c.key_pem())
    text = ("# a batch written on Windows\r\n"
            "\r\n"
            "   \t  \r\n"
            "add cert \"%s\"   # the file name has a space and a quote\r\n"
            "add 'sslcert' hostnameport=q.example.com:443 certhash=%s\\\r\n"
            "   # an indented comment\r\n"
            "add sslcert hostname\"port=r.example.com:4\"43 'certhash='%s\r\n"
            "add sslcert hostnameport=s.example.com:443 certhash=%s appid=\\{00112233-4455-"
            "6677-8899-aabbccddeeff\\}\r\n"
            % (str(spaced).replace('"', '\\"'), c.thumbprint[:-1] + "\\" + c.thumbprint[-1],
               c.thumbprint, c.thumbprint))
    batch = write_batch(cb, text.replace("\\\r\n", "\r\n"))
    out = cb.ok("-f", batch)
    assert "Ran 4 commands" in out and "bindings 3 added" in out
    bs = {x["key"]: x for x in cb.bindings()}
    assert sorted(bs) == ["hostnameport=q.example.com:443", "hostnameport=r.example.com:443",
                          "hostnameport=s.example.com:443"]
    assert bs["hostnameport=s.example.com:443"]["appid"] == "{00112233-4455-6677-8899-aabbccddeeff}"


def test_standard_input(cb, two):
    a, _ = two
    rc, out, err = cb.run("-f", "-", input=("add cert %s\nadd sslcert ccs=8443 ccspath=%s\n"
                                            % (a.bundle_path, cb.home)).encode())
    assert rc == 0, err
    assert out.startswith("Ran 2 commands from <stdin>: certificates 1 added")
    assert [x["key"] for x in cb.bindings()] == ["ccs=8443"]


def test_empty_batch_changes_nothing(cb):
    batch = write_batch(cb, "# nothing yet\n\n")
    before = cb.snapshot()
    out = cb.ok("-f", batch)
    assert out.startswith("Ran 0 commands")
    assert cb.snapshot() == before


def test_add_cert_many_files_outside_a_batch(cb, two):
    a, b = two
    out = cb.ok("add", "cert", a.bundle_path, b.bundle_path)
    assert out == "%s\n%s\n" % (a.thumbprint, b.thumbprint)
    cb.fails(2, "add", "cert", a.bundle_path, b.cert_path, "key=%s" % b.key_path,
             match="key= is the key of one certificate")


# -- failures: FILE:LINE, exit status, nothing changed ---------------------------------------

BAD_LINES = [
    # (line, exit status, what the message says)
    ("frobnicate cert x.pem", 2, "'frobnicate' is not a command"),
    ("add sslcert hostnameport=bad certhash=%(T)s", 2, "hostnameport"),
    ("add sslcert hostnameport=x.example.com:443 certhash=%(T)s colour=blue", 2, "colour="),
    ("add cert /nonexistent/cert.pem", 2, "no such file"),
    ("add sslcert hostnameport=old.example.com:443 certhash=%(T)s", 1, "already exists"),
    ("delete sslcert hostnameport=absent.example.com:443", 1, "no binding"),
    ("update sslcert hostnameport=absent.example.com:443 backend=127.0.0.1:1", 1, "no binding"),
    ("delete cert %(T)s", 1, "is used by 1 binding"),
    ("add cert \"unbalanced.pem", 2, "unbalanced double"),
    ("add cert 'unbalanced.pem", 2, "unbalanced single"),
    ("add cert trailing\\", 2, "ends with a backslash"),
    ("add cert bell\x07.pem", 2, "control character"),
    ("show sslcert", 2, "cannot run in a batch"),
    ("check", 2, "cannot run in a batch"),
    ("serve", 2, "cannot run in a batch"),
    ("set user=root", 2, "cannot run in a batch"),
    ("import netsh x.txt", 2, "cannot run in a batch"),
    ("show sslcert --json", 2, "flags are not taken"),
    ("-f other.txt", 2, "flags are not taken"),
    ("add sslcert hostnameport=z.example.com:443 certhash=%(N)s", 1, "unknown-cert"),
    ("delete cert %(N)s\nadd cert %(NB)s", 2, "cannot delete a certificate and add it back"),
    ("add cert " + "x" * 70000, 2, "longer than 65536 bytes"),
]


def test_bad_line_fails_the_whole_batch_with_file_and_line(cb, certs):
    old = certs.make(cn="old.example.com")
    cb.add_cert(old, native=True)
    cb.ok("add", "sslcert", "hostnameport=old.example.com:443", "certhash=%s" % old.thumbprint,
          native=True)
    new = certs.make(cn="new.example.com")
    gone = certs.make(cn="gone.example.com")
    cb.add_cert(gone, native=True)
    good = ("# good lines first: their rows and files must go again\n"
            "add cert %s\n"
            "add sslcert hostnameport=new.example.com:443 certhash=%s\n"
            % (new.bundle_path, new.thumbprint))
    # "delete cert then add back" needs a certificate stored before the batch: `gone`.
    subst = {"T": old.thumbprint, "N": new.thumbprint, "NB": gone.bundle_path}

    def check(case):
        line, status, match = case
        line = line % subst
        if "delete cert" in line and "add cert" in line:
            line = line.replace(new.thumbprint, gone.thumbprint)
        elif "unknown-cert" in match:
            line = line.replace(new.thumbprint, "AB" * 20)
        batch = write_batch(cb, good + line + "\nadd sslcert ccs=9443 ccspath=/srv\n")
        msg = cb.fails(status, "-f", batch, match=[match])
        assert msg.startswith("%s:%d: " % (batch, 4 + line.count("\n"))), msg

    each(BAD_LINES, check)
    assert store_files(cb) == sorted(["certs/%s.pem" % t for t in (old.thumbprint, gone.thumbprint)]
                                     + ["keys/%s.key" % t for t in (old.thumbprint, gone.thumbprint)])


def test_bad_line_on_standard_input_names_stdin(cb, two):
    a, _ = two
    cb.add_cert(a, native=True)
    msg = cb.fails(1, "-f", "-", input=b"\n\ndelete sslcert ccs=1\n")
    assert msg.startswith("<stdin>:3: no binding ccs=1"), msg


@pytest.mark.parametrize("args,match", [
    (["-f"], "-f needs a file"),
    (["-f", ""], "-f needs a file"),
    (["-f", "a.txt", "-f", "b.txt"], "-f given twice"),
    (["-f", "a.txt", "show", "sslcert"], "give no command beside it"),
    (["-f", "/nonexistent/batch.txt"], "cannot read the batch file /nonexistent/batch.txt"),
])
def test_bad_command_line(cb, args, match):
    cb.fails(2, *args, match=match)


def test_one_bad_line_among_a_thousand_changes_nothing(cb, certs):
    ca = certs.make(cn="*.bulk.example.com", sans=["*.bulk.example.com"])
    cb.add_cert(ca, native=True)
    own = [certs.make(cn="own%d.example.com" % i) for i in range(20)]
    lines = ["add cert %s" % c.bundle_path for c in own]
    lines += ["add sslcert hostnameport=h%d.bulk.example.com:443 certhash=%s" % (i, ca.thumbprint)
              for i in range(1000)]
    bad_at = 520
    lines.insert(bad_at, "add sslcert hostnameport=h7.bulk.example.com:443 certhash=%s"
                 % ca.thumbprint)  # h7 was added above: already exists
    batch = write_batch(cb, "\n".join(lines) + "\n")
    msg = cb.fails(1, "-f", batch, match="already exists")
    assert msg.startswith("%s:%d: " % (batch, bad_at + 1)), msg
    assert cb.bindings() == []
    # The same file without the bad line goes in whole.
    del lines[bad_at]
    write_batch(cb, "\n".join(lines) + "\n")
    assert "certificates 20 added" in cb.ok("-f", batch, native=True)
    assert len(cb.bindings()) == 1000


def test_kill_in_the_middle_leaves_the_store_as_before(cb, certs):
    """kill -9 while the batch is open (it waits for more lines on standard input, after
    writing the files of the first ones): the store is as before; the same batch then runs
    whole (files the killed one left are written again)."""
    base = certs.make(cn="base.example.com")
    cb.add_cert(base, native=True)
    before = (cb.certs(), cb.bindings())
    own = [certs.make(cn="k%d.example.com" % i) for i in range(30)]
    text = "".join("add cert %s\nadd sslcert hostnameport=k%d.example.com:443 certhash=%s\n"
                   % (c.bundle_path, i, c.thumbprint) for i, c in enumerate(own))
    p = subprocess.Popen([BIN, "-f", "-", "--state", str(cb.state)], env=cb.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(text.encode())
        p.stdin.flush()
        last_key = cb.state / "keys" / ("%s.key" % own[-1].thumbprint)
        import time
        deadline = time.monotonic() + TIMEOUT
        while not last_key.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a deadline
        assert last_key.exists() and p.poll() is None, "the batch did not get to its last line"
        p.send_signal(signal.SIGKILL)
        assert p.wait(timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    assert (cb.certs(), cb.bindings()) == before
    assert cb.integrity() == "ok"
    rc, out, err = cb.run("-f", "-", input=text.encode())
    assert rc == 0, err
    assert "certificates 30 added" in out and "bindings 30 added" in out
    assert len(cb.bindings()) == 30


def test_store_busy_fails_cleanly(cb, two):
    """Another writer holds the store: the batch says so (try again) and changes nothing."""
    a, _ = two
    cb.add_cert(a, native=True)
    locker = subprocess.Popen(["sqlite3", str(cb.db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        locker.stdin.write("BEGIN IMMEDIATE;\nSELECT 'locked';\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"
        batch = write_batch(cb, "add sslcert ccs=9443 ccspath=/srv\n")
        rc, out, err = cb.run("-f", batch, env=cb.env())
        assert rc == 1 and out == ""
        assert_one_error(err)
        assert ("%s:1: " % batch) in err and "busy" in err
    finally:
        locker.stdin.close()
        locker.wait(timeout=TIMEOUT)
    assert cb.bindings() == []


def test_help_describes_batches(cb):
    out = cb.ok("--help", state=False)
    assert "-f FILE" in out and "add cert FILE FILE" in out


def test_batch_file_need_not_be_utf8_safe_for_comments(cb):
    """Bytes that are not UTF-8 in a comment are no command and harm nothing."""
    batch = write_batch(cb, b"# caf\xe9\n")
    assert cb.ok("-f", batch).startswith("Ran 0 commands")


def test_unreadable_state_is_reported_with_line(cb, tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    batch = write_batch(cb, "delete sslcert ccs=1\n")
    rc, out, err = cb.run("-f", batch, "--state", blocker, state=False)
    assert rc != 0 and out == ""
    assert_one_error(err)
    assert err.startswith(ERR + "%s:1: " % batch)
    assert os.path.isfile(blocker)


# -- the bulk path: one key file for many lines, the file writer thread ---------------------

def test_one_key_file_named_by_many_lines(cb, certs):
    """key= naming one file on many lines (a provider's shared key): read once while it stays
    the same, and every certificate gets its own key file (0600, the key as PKCS#8), its own
    certificate file (leaf first, then its chain) and its own thumbprint; a chain whose CA
    comes first and an RSA certificate go in alike."""
    shared = certs.new_key()
    own = [certs.make(cn="s%d.example.com" % i, key=shared) for i in range(40)]
    key_file = own[0].key_path
    chained = certs.chain(cn="chained.example.com", ca_first=True)
    rsa_one = certs.make(cn="rsa.example.com", key_type="rsa")
    lines = ["add cert %s key=%s" % (c.cert_path, key_file) for c in own]
    lines.append("add cert %s key=%s" % (chained.chain_path, chained.key_path))
    lines.append("add cert %s key=%s" % (rsa_one.cert_path, rsa_one.key_path))
    lines += ["add sslcert hostnameport=s%d.example.com:443 certhash=%s" % (i, c.thumbprint)
              for i, c in enumerate(own)]
    batch = write_batch(cb, "\n".join(lines) + "\n")
    out = cb.ok("-f", batch)
    assert "certificates 42 added" in out and "bindings 40 added" in out
    stored = {c["thumbprint"]: c for c in cb.certs()}
    want = own + [chained, rsa_one]
    assert sorted(stored) == sorted(c.thumbprint for c in want)
    for c in want:
        assert stored[c.thumbprint]["sha256"] == c.sha256
        key = cb.state / "keys" / ("%s.key" % c.thumbprint)
        assert key.stat().st_mode & 0o777 == 0o600
        assert key.read_bytes() == c.key_pem()
        pem = (cb.state / "certs" / ("%s.pem" % c.thumbprint)).read_bytes()
        assert pem.startswith(c.pem)
    assert (cb.state / "certs" / ("%s.pem" % chained.thumbprint)).read_bytes() == \
        chained.pem + chained.ca.pem
    assert [p for p in (cb.state / "keys").iterdir() if ".tmp" in p.name] == []


def test_a_certificate_not_matching_the_shared_key_fails_its_line(cb, certs):
    shared = certs.new_key()
    own = [certs.make(cn="m%d.example.com" % i, key=shared) for i in range(10)]
    stranger = certs.make(cn="stranger.example.com")
    base = certs.make(cn="base.example.com")
    cb.add_cert(base, native=True)
    lines = ["add cert %s key=%s" % (c.cert_path, own[0].key_path) for c in own]
    lines.insert(7, "add cert %s key=%s" % (stranger.cert_path, own[0].key_path))
    batch = write_batch(cb, "\n".join(lines) + "\n")
    msg = cb.fails(2, "-f", batch, match="does not match the certificate")
    assert msg.startswith("%s:8: " % batch), msg
    assert [c["thumbprint"] for c in cb.certs()] == [base.thumbprint]
    assert store_files(cb) == ["certs/%s.pem" % base.thumbprint, "keys/%s.key" % base.thumbprint]


def test_a_key_file_changed_between_lines_is_read_again(cb, certs):
    """The key file named by key= is rewritten in place (same inode, same size) between two
    lines of one batch on standard input: the second line gets the new key."""
    first = certs.make(cn="first.example.com")
    second = certs.make(cn="second.example.com")
    key_file = certs.write("rotating.key", first.key_pem())
    p = subprocess.Popen([BIN, "-f", "-", "--state", str(cb.state)], env=cb.env(),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(("add cert %s key=%s\n" % (first.cert_path, key_file)).encode())
        p.stdin.flush()
        written = cb.state / "keys" / ("%s.key" % first.thumbprint)
        import time
        deadline = time.monotonic() + TIMEOUT
        while not written.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a deadline
        assert written.exists() and p.poll() is None, "the first line did not run"
        assert len(second.key_pem()) == len(first.key_pem())
        with open(key_file, "r+b") as f:  # in place: the inode stays
            f.write(second.key_pem())
        p.stdin.write(("add cert %s key=%s\n" % (second.cert_path, key_file)).encode())
        p.stdin.close()
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
        assert p.wait(timeout=TIMEOUT) == 0, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert "certificates 2 added" in out
    assert (cb.state / "keys" / ("%s.key" % second.thumbprint)).read_bytes() == second.key_pem()
    assert (cb.state / "keys" / ("%s.key" % first.thumbprint)).read_bytes() == first.key_pem()


def test_a_file_that_cannot_be_written_fails_its_own_line_and_nothing_changes(cb, certs):
    """The files are written on a thread while later lines run: a key file that cannot be
    created (a folder is in its place) fails the batch with the line that added it, even
    though later lines ran meanwhile; every file the batch wrote goes again."""
    base = certs.make(cn="base.example.com")
    cb.add_cert(base, native=True)
    shared = certs.new_key()
    own = [certs.make(cn="w%d.example.com" % i, key=shared) for i in range(150)]
    blocked = 120
    (cb.state / "keys" / ("%s.key" % own[blocked].thumbprint)).mkdir()
    before = (cb.certs(), store_files(cb))
    lines = []
    for i, c in enumerate(own):
        lines.append("add cert %s key=%s" % (c.cert_path, own[0].key_path))
        lines.append("add sslcert hostnameport=w%d.example.com:443 certhash=%s"
                     % (i, c.thumbprint))
    batch = write_batch(cb, "# header\n" + "\n".join(lines) + "\n")
    msg = cb.fails(1, "-f", batch, match="cannot write")
    assert msg.startswith("%s:%d: " % (batch, 2 + 2 * blocked)), msg
    assert own[blocked].thumbprint in msg
    assert (cb.certs(), store_files(cb)) == before
    assert cb.bindings() == []
    assert [p for d in ("certs", "keys") for p in (cb.state / d).iterdir()
            if ".tmp" in p.name] == []
    # The next line fails on its own, before the writer got to the file: the file of the
    # line before is still the first error.
    lines[2 * blocked + 1] = "delete sslcert ccs=1"
    write_batch(cb, "# header\n" + "\n".join(lines) + "\n")
    msg = cb.fails(1, "-f", batch, match="cannot write")
    assert msg.startswith("%s:%d: " % (batch, 2 + 2 * blocked)), msg
    assert (cb.certs(), store_files(cb)) == before


def test_files_loaded_ahead_fail_at_their_own_line(cb, certs):
    """A batch file is read ahead of the line running, and the files of its `add cert` lines
    loaded beside it (up to 64 lines ahead): a file that cannot be loaded, far past the
    first lines, still fails its own line with the command's own words and nothing changes;
    lines the reader leaves to the command (a password file, link=yes, two files on one
    line) mixed in go in as before."""
    base = certs.make(cn="base.example.com")
    cb.add_cert(base, native=True)
    before = store_files(cb)
    shared = certs.new_key()
    own = [certs.make(cn="a%d.example.com" % i, key=shared) for i in range(150)]
    key_file = own[0].key_path
    lines = ["add cert %s key=%s" % (c.cert_path, key_file) for c in own]
    secret = certs.make(cn="secret.example.com", key_password="s3cret")
    pw = certs.password_file("s3cret")
    linked = certs.make(cn="linked.example.com")
    pair = [certs.make(cn="p%d.example.com" % i) for i in range(2)]
    lines.insert(3, "add cert %s key=%s password-file=%s" % (secret.cert_path, secret.key_path, pw))
    lines.insert(70, "add cert %s key=%s link=yes" % (linked.cert_path, linked.key_path))
    lines.insert(100, "add cert %s %s" % (pair[0].bundle_path, pair[1].bundle_path))
    missing = cb.home / "missing.pem"
    bad = lines[:]
    bad.insert(130, "add cert %s key=%s" % (missing, key_file))
    batch = write_batch(cb, "\n".join(bad) + "\n")
    msg = cb.fails(2, "-f", batch, match="no such file")
    assert msg.startswith("%s:131: " % batch) and str(missing) in msg, msg
    assert len(cb.certs()) == 1 and store_files(cb) == before
    # The wrong key for one certificate, in the middle: the command's message, its line.
    stranger = certs.make(cn="stranger.example.com")
    bad = lines[:]
    bad.insert(120, "add cert %s key=%s" % (stranger.cert_path, key_file))
    write_batch(cb, "\n".join(bad) + "\n")
    msg = cb.fails(2, "-f", batch, match="does not match the certificate")
    assert msg.startswith("%s:121: " % batch), msg
    assert len(cb.certs()) == 1 and store_files(cb) == before
    write_batch(cb, "\n".join(lines) + "\n")
    assert "certificates 154 added" in cb.ok("-f", batch)
    stored = {c["thumbprint"] for c in cb.certs()}
    want = own + [secret, linked] + pair + [base]
    assert stored == {c.thumbprint for c in want}
    for c in own[::37] + [secret] + pair:
        assert (cb.state / "keys" / ("%s.key" % c.thumbprint)).read_bytes() == c.key_pem()


@pytest.mark.skipif(not os.path.exists("/usr/bin/strace"), reason="strace is not installed")
def test_add_cert_takes_the_files_loaded_ahead(cb, certs, tmp_path):
    """The certificates of a batch file are read once, by the reader thread, and the lines
    take what it loaded: every certificate file is opened exactly once in the whole run
    (strace), and the store holds each one, with the shared key."""
    base = certs.make(cn="base.example.com")
    cb.add_cert(base, native=True)
    shared = certs.new_key()
    own = [certs.make(cn="o%d.example.com" % i, key=shared) for i in range(100)]
    lines = ["add cert %s key=%s" % (c.cert_path, own[0].key_path) for c in own]
    batch = write_batch(cb, "\n".join(lines) + "\n")
    trace = tmp_path / "trace.txt"
    env = cb.env()
    # LeakSanitizer cannot run under ptrace; the other tests of this file look for leaks.
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = subprocess.run(["/usr/bin/strace", "-f", "-qq", "-e", "trace=openat", "-o", str(trace),
                        BIN, "--state", str(cb.state), "-f", str(batch)], env=env,
                       capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr.decode()
    text = trace.read_text()
    for c in own:
        assert text.count('"%s"' % c.cert_path) == 1, c.cert_path
    assert {c["thumbprint"] for c in cb.certs()} == {c.thumbprint for c in own + [base]}
