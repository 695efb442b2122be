"""The ACME client (src/acme) against a real Pebble, and against a scripted fake CA for
what Pebble cannot be made to do on demand (garbage, a badNonce on a given request,
rate limits, ARI). Each test names the behaviour it proves."""

import base64
import datetime
import email.utils
import json
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import EAB_HMAC, EAB_KID, REPO, run_probe

TOS = "--agree-tos"
ERR_PREFIX = "urn:ietf:params:acme:error:"


def load_chain(path):
    text = Path(path).read_bytes()
    end = b"-----END CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(block + end)
            for block in text.split(end) if block.strip()]


def sans(path):
    leaf = load_chain(path)
    names = leaf[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return leaf, sorted(names.get_values_for_type(x509.DNSName))


# ---- Pebble ----

def test_account_registers_and_the_same_key_finds_it_again(pebble, probe, tmp_path):
    key = tmp_path / "account.key"
    first = probe(pebble.directory, "account",
                  opts=[TOS, "--email", "ops@example.com", "--account-key", key])
    assert first.returncode == 0, first
    assert first["account"].startswith("https://127.0.0.1:%d/" % pebble.port)
    assert (key.stat().st_mode & 0o777) == 0o600
    again = probe(pebble.directory, "account", opts=[TOS, "--account-key", key])
    assert again.returncode == 0, again
    assert again["account"] == first["account"]


def test_terms_of_service_without_agreement_is_refused_as_malformed(pebble, probe):
    r = probe(pebble.directory, "account")
    assert r.returncode == 2, r
    assert "agreetos=yes" in r.stderr
    assert "data:text/plain" in r.stderr  # Pebble's terms, named


def test_external_account_binding(pebble_factory, probe):
    ca = pebble_factory("pebble-eab", eab=True)
    missing = probe(ca.directory, "account", opts=[TOS])
    assert missing.returncode == 2, missing
    assert "External Account Binding" in missing.stderr
    ok = probe(ca.directory, "account", opts=[TOS, "--eab-kid", EAB_KID, "--eab-hmac", EAB_HMAC])
    assert ok.returncode == 0, ok
    assert ok["account"].startswith("https://")
    wrong_key = base64.urlsafe_b64encode(os.urandom(48)).rstrip(b"=").decode()
    wrong = probe(ca.directory, "account",
                  opts=[TOS, "--eab-kid", EAB_KID, "--eab-hmac", wrong_key])
    assert wrong.returncode == 1, wrong
    assert wrong["problem_type"].startswith(ERR_PREFIX), wrong
    assert wrong_key not in wrong.stdout + wrong.stderr  # the HMAC key is never printed
    unknown = probe(ca.directory, "account",
                    opts=[TOS, "--eab-kid", "no-such-kid", "--eab-hmac", EAB_HMAC])
    assert unknown.returncode == 1, unknown


def test_issues_a_certificate_by_tls_alpn_01(pebble, probe, tmp_path):
    out = tmp_path / "chain.pem"
    r = probe(pebble.directory, "obtain", "alpn.example.test", opts=[TOS, "--out", out])
    assert r.returncode == 0, r
    assert r.lists.get("presented") == ["tls-alpn-01:alpn.example.test"]
    assert r["presented_count"] == r["cleanup_count"]
    assert int(r["chain_certs"]) >= 2
    chain, names = sans(out)
    assert names == ["alpn.example.test"]
    assert chain[0].issuer == chain[1].subject


def test_issues_an_rsa_certificate_too(pebble, probe, tmp_path):
    out = tmp_path / "chain.pem"
    r = probe(pebble.directory, "obtain", "rsa.example.test",
              opts=[TOS, "--keytype", "rsa", "--out", out])
    assert r.returncode == 0, r
    chain, names = sans(out)
    assert names == ["rsa.example.test"]
    assert chain[0].public_key().key_size == 2048


def test_wildcard_is_validated_by_dns_01(pebble, probe, tmp_path):
    out = tmp_path / "chain.pem"
    r = probe(pebble.directory, "obtain", "*.wild.example.test", "wild.example.test",
              opts=[TOS, "--out", out])
    assert r.returncode == 0, r
    assert "dns-01:wild.example.test" in r.lists["presented"]
    assert "tls-alpn-01:*.wild.example.test" not in r.lists["presented"]
    assert sorted(r.lists["presented"]) == sorted(r.lists["cleanup"])
    _, names = sans(out)
    assert names == ["*.wild.example.test", "wild.example.test"]


def test_prefer_dns_uses_dns_01_for_a_plain_name(pebble, probe, tmp_path):
    r = probe(pebble.directory, "obtain", "prefer-dns.example.test",
              opts=[TOS, "--prefer-dns"])
    assert r.returncode == 0, r
    assert r.lists.get("presented") == ["dns-01:prefer-dns.example.test"]


def test_failed_challenge_reports_the_problem_and_still_cleans_up(pebble, probe):
    # no TXT record is published: Pebble marks the authorization invalid
    r = probe(pebble.directory, "obtain", "no-txt.example.test",
              opts=[TOS, "--prefer-dns", "--no-solve"])
    assert r.returncode == 1, r
    assert r["failed_step"] == "authorization"
    assert r["problem_type"] == ERR_PREFIX + "unauthorized", r
    assert r["problem_detail"]
    assert r["presented_count"] == "1" and r["cleanup_count"] == "1"
    assert "no-txt.example.test" in r.stderr and "dns-01" in r.stderr


def test_stopped_ca_fails_cleanly(pebble_factory, probe):
    ca = pebble_factory("pebble-stopped")
    directory = ca.directory
    ca.close()
    r = probe(directory, "obtain", "down.example.test", opts=[TOS])
    assert r.returncode == 1, r
    assert "cannot reach the ACME server" in r.stderr
    assert r["presented_count"] == "0"


def test_untrusted_ca_certificate_is_refused(pebble, tmp_path):
    other = tmp_path / "other.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    other.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    r = run_probe("--directory", pebble.directory, "--cafile", other, TOS, "account")
    assert r.returncode == 1, r
    assert "cannot reach the ACME server" in r.stderr


def test_http_directory_is_refused_as_malformed(probe):
    r = probe("http://127.0.0.1:1/dir", "account", opts=[TOS])
    assert r.returncode == 2, r
    assert "https" in r.stderr


# ---- the fake CA ----

def dir_route(body, status=200):
    return lambda method, req: (status, {"Content-Type": "application/json"}, body)


@pytest.mark.parametrize("junk", [
    b"<html>hello</html>",
    b"[1, 2, 3]",
    b'{"newNonce": "http://127.0.0.1/n", "newAccount": "https://x/a", "newOrder": "https://x/o"}',
    b'{"newNonce": 5, "newAccount": "https://x/a", "newOrder": "https://x/o"}',
    b'{"newNonce": "https://x/n", "newAccount": "https://x/a"}',
    b'{"newNonce": "https://x/n", "newAccount": "https://x/a", "newOrder": "https://x/o", '
    b'"meta": {"externalAccountRequired": "yes"}}',
    b"\x00\xff" * 1000,
    b"",
], ids=["html", "array", "http-url", "number", "no-neworder", "bad-meta", "binary", "empty"])
def test_garbage_directory_is_a_clean_failure(fake_ca, probe, junk):
    fake_ca.routes["/dir"] = dir_route(junk)
    r = probe(fake_ca.url("/dir"), "obtain", "junk.example.test", opts=[TOS])
    assert r.returncode == 1, r
    assert "is not an ACME directory" in r.stderr
    assert r["presented_count"] == "0"


def test_oversized_answer_is_refused(fake_ca, probe):
    fake_ca.routes["/dir"] = dir_route(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    r = probe(fake_ca.url("/dir"), "account", opts=[TOS])
    assert r.returncode == 1, r
    assert "larger than 1 MiB" in r.stderr


def test_redirect_is_not_followed(fake_ca, probe):
    fake_ca.routes["/dir"] = lambda m, b: (302, {"Location": fake_ca.url("/real")}, b"")
    fake_ca.routes["/real"] = dir_route(fake_ca.directory())
    r = probe(fake_ca.url("/dir"), "account", opts=[TOS])
    assert r.returncode == 1, r
    assert "HTTP 302" in r.stderr
    assert not any(path == "/real" for _, path, _, _ in fake_ca.requests)


def bad_nonce(detail="JWS has an invalid anti-replay nonce"):
    return (400, {"Content-Type": "application/problem+json"},
            json.dumps({"type": ERR_PREFIX + "badNonce", "detail": detail, "status": 400}))


def test_bad_nonce_is_retried_with_the_fresh_nonce(fake_ca, probe):
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory())
    fake_ca.routes["/nonce"] = lambda m, b: (200, {}, b"")
    answers = [bad_nonce(), bad_nonce(),
               (201, {"Location": fake_ca.url("/acct/7")}, '{"status":"valid"}')]
    sent_after = []

    def acct(method, body):
        sent_after.append(fake_ca.nonces_issued[-1] if fake_ca.nonces_issued else None)
        return answers.pop(0)

    fake_ca.routes["/acct"] = acct
    r = probe(fake_ca.url("/dir"), "account", opts=[TOS])
    assert r.returncode == 0, r
    assert r["account"] == fake_ca.url("/acct/7")
    posts = [FakeBody(b) for m, p, b, _ in fake_ca.requests if p == "/acct"]
    assert len(posts) == 3
    nonces = [p.protected["nonce"] for p in posts]
    assert len(set(nonces)) == 3  # never reused
    # each retry carries the nonce the badNonce answer handed out
    assert nonces[1] == sent_after[1] and nonces[2] == sent_after[2]
    assert all(p.protected["url"] == fake_ca.url("/acct") for p in posts)
    assert "jwk" in posts[0].protected and "kid" not in posts[0].protected
    assert json.loads(posts[0].payload)["termsOfServiceAgreed"] is True


def test_bad_nonce_retries_are_bounded(fake_ca, probe):
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory())
    fake_ca.routes["/nonce"] = lambda m, b: (200, {}, b"")
    fake_ca.routes["/acct"] = lambda m, b: bad_nonce()
    r = probe(fake_ca.url("/dir"), "account", opts=[TOS])
    assert r.returncode == 1, r
    assert r["problem_type"] == ERR_PREFIX + "badNonce"
    assert sum(1 for _, p, _, _ in fake_ca.requests if p == "/acct") == 6


class FakeBody:
    def __init__(self, raw):
        doc = json.loads(raw)
        self.protected = json.loads(base64.urlsafe_b64decode(
            doc["protected"] + "=" * (-len(doc["protected"]) % 4)))
        self.payload = base64.urlsafe_b64decode(doc["payload"] + "=" * (-len(doc["payload"]) % 4))


def rate_limited_ca(fake_ca, retry_after):
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory())
    fake_ca.routes["/nonce"] = lambda m, b: (200, {}, b"")
    fake_ca.routes["/acct"] = lambda m, b: (201, {"Location": fake_ca.url("/acct/1")}, "{}")
    fake_ca.routes["/order"] = lambda m, b: (
        429, {"Content-Type": "application/problem+json", "Retry-After": retry_after},
        json.dumps({"type": ERR_PREFIX + "rateLimited", "status": 429,
                    "detail": "too many certificates already issued"}))


def test_rate_limit_gives_retry_after_from_delta_seconds(fake_ca, probe):
    rate_limited_ca(fake_ca, "3600")
    before = int(time.time())
    r = probe(fake_ca.url("/dir"), "obtain", "busy.example.test", opts=[TOS])
    after = int(time.time())
    assert r.returncode == 1, r
    assert r["failed_step"] == "newOrder"
    assert r["problem_type"] == ERR_PREFIX + "rateLimited"
    assert before + 3600 <= int(r["retry_after"]) <= after + 3600
    # the order request was signed with the account URL as kid
    order = [FakeBody(b) for m, p, b, _ in fake_ca.requests if p == "/order"][0]
    assert order.protected["kid"] == fake_ca.url("/acct/1") and "jwk" not in order.protected
    assert json.loads(order.payload) == {
        "identifiers": [{"type": "dns", "value": "busy.example.test"}]}


def test_rate_limit_gives_retry_after_from_an_http_date(fake_ca, probe):
    when = int(time.time()) + 7200
    rate_limited_ca(fake_ca, email.utils.formatdate(when, usegmt=True))
    r = probe(fake_ca.url("/dir"), "obtain", "busy.example.test", opts=[TOS])
    assert r.returncode == 1, r
    assert int(r["retry_after"]) == when


def ari_cert(folder):
    """A certificate with an AKI, and its ARI CertID computed here independently."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ari.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    keyid = os.urandom(20)
    serial = int.from_bytes(b"\x80" + os.urandom(8), "big")  # high bit: DER adds a 00
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.AuthorityKeyIdentifier(keyid, None, None), critical=False)
            .sign(key, hashes.SHA256()))
    path = folder / "ari.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    serial_der = b"\x00" + serial.to_bytes(9, "big")

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return path, "%s.%s" % (b64(keyid), b64(serial_der))


def test_renewal_window_from_ari(fake_ca, probe, tmp_path):
    pem, cert_id = ari_cert(tmp_path)
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory(renewalInfo=fake_ca.url("/ari")))
    fake_ca.routes["/ari/" + cert_id] = lambda m, b: (200, {"Retry-After": "21600"}, json.dumps(
        {"suggestedWindow": {"start": "2030-01-02T03:04:05Z", "end": "2030-01-03T03:04:05Z"}}))
    r = probe(fake_ca.url("/dir"), "ari", opts=["--cert", pem])
    assert r.returncode == 0, r
    assert int(r["window_start"]) == 1893553445
    assert int(r["window_end"]) == 1893553445 + 86400


def test_renewal_window_not_offered_is_not_found(fake_ca, probe, tmp_path):
    pem, _ = ari_cert(tmp_path)
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory())
    r = probe(fake_ca.url("/dir"), "ari", opts=["--cert", pem])
    assert r.returncode == 1, r
    assert r["rc"] == "-3"  # CB_ENOENT
    assert "offers no renewal information" in r.stderr


def test_renewal_window_garbage_is_refused(fake_ca, probe, tmp_path):
    pem, cert_id = ari_cert(tmp_path)
    fake_ca.routes["/dir"] = dir_route(fake_ca.directory(renewalInfo=fake_ca.url("/ari")))
    fake_ca.routes["/ari/" + cert_id] = lambda m, b: (200, {}, json.dumps(
        {"suggestedWindow": {"start": "2030-01-03T03:04:05Z", "end": "2030-01-02T03:04:05Z"}}))
    r = probe(fake_ca.url("/dir"), "ari", opts=["--cert", pem])
    assert r.returncode == 1, r
    assert "ends before it starts" in r.stderr


# ---- the driver under AddressSanitizer ----

ASAN_PROBE = os.environ.get("CB_ACME_PROBE_ASAN") or str(REPO / "build-asan" / "cb_acme_probe")


@pytest.mark.skipif(not os.access(ASAN_PROBE, os.X_OK),
                    reason="no ASan build of cb_acme_probe (build-asan)")
def test_driver_under_asan(pebble, fake_ca, tls, challsrv, tmp_path):
    env = {"CB_ACME_PROBE": ASAN_PROBE, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    base = ["--cafile", tls.cafile, "--challsrv", challsrv.url, TOS]

    def run(*args):
        import subprocess
        p = subprocess.run([ASAN_PROBE] + [str(a) for a in args], capture_output=True,
                           text=True, timeout=600, env=dict(os.environ, **env))
        assert "Sanitizer" not in p.stderr, p.stderr
        return p

    ok = run("--directory", pebble.directory, *base, "obtain", "asan.example.test",
             "*.asan.example.test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run("--directory", pebble.directory, *base, "--prefer-dns", "--no-solve", "obtain",
              "asan-fail.example.test")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    fake_ca.routes["/dir"] = dir_route(b'{"newNonce": [')
    junk = run("--directory", fake_ca.url("/dir"), *base, "account")
    assert junk.returncode == 1, junk.stdout + junk.stderr
