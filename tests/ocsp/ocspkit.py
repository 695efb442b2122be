"""A test PKI with OCSP for the stapling suite: a CA, a delegated OCSP responder
certificate, leaves whose AIA names a responder (and one with must-staple), a real
`openssl ocsp` responder over an index file, and a small HTTP server answering on the
CA's behalf with what the test asks for (an expired response, junk, or nothing at all).

Processes are started and stopped by PID; ports come from cbe2e.free_port().
"""

import atexit
import datetime
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import cbe2e

NOW = lambda: datetime.datetime.now(datetime.timezone.utc)  # noqa: E731


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


class Leaf:
    def __init__(self, cert, key, chain_path, key_path, cert_path):
        self.cert = cert
        self.key = key
        self.chain_path = chain_path  # leaf then CA: what certbind imports
        self.cert_path = cert_path  # the leaf alone
        self.key_path = key_path
        der = cert.public_bytes(serialization.Encoding.DER)
        import hashlib

        self.thumb = hashlib.sha1(der).hexdigest().upper()
        self.serial = cert.serial_number


class PKI:
    """A CA in folder, its OCSP signer, and the leaves it issued."""

    def __init__(self, folder):
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ca_key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certbind OCSP test CA")])
        self.ca = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW() - datetime.timedelta(days=1))
            .not_valid_after(NOW() + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_path = self.dir / "ca.crt"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        _write_key(self.dir / "ca.key", self.ca_key)
        # A delegated responder (RFC 6960 4.2.2.2): issued by the CA for OCSP signing.
        self.rkey = _key()
        self.rcert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OCSP responder")]))
            .issuer_name(self.ca.subject).public_key(self.rkey.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW() - datetime.timedelta(days=1))
            .not_valid_after(NOW() + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.rcert_path = self.dir / "responder.crt"
        self.rcert_path.write_bytes(self.rcert.public_bytes(serialization.Encoding.PEM))
        self.rkey_path = self.dir / "responder.key"
        _write_key(self.rkey_path, self.rkey)
        self.index = self.dir / "index.txt"
        self.index.write_text("")
        (self.dir / "index.txt.attr").write_text("unique_subject = no\n")

    def leaf(self, stem, name, url, must_staple=False, listed="V", rsa_key=False):
        """A leaf for name whose AIA names url (None: no AIA). listed: "V" valid, "R"
        revoked or None (not in the index: the responder answers unknown). rsa_key: an
        RSA-2048 key instead of ECDSA P-256."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key else _key()
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW() - datetime.timedelta(days=1))
            .not_valid_after(NOW() + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        )
        if url is not None:
            b = b.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(url))]), critical=False)
        if must_staple:
            b = b.add_extension(x509.TLSFeature([x509.TLSFeatureType.status_request]),
                                critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cert_path = self.dir / (stem + ".crt")
        cert_path.write_bytes(pem)
        chain_path = self.dir / (stem + ".chain.pem")
        chain_path.write_bytes(pem + self.ca.public_bytes(serialization.Encoding.PEM))
        key_path = self.dir / (stem + ".key")
        _write_key(key_path, key)
        if listed is not None:
            exp = cert.not_valid_after.strftime("%y%m%d%H%M%SZ")
            rev = (NOW() - datetime.timedelta(hours=1)).strftime("%y%m%d%H%M%SZ") if listed == "R" else ""
            dn = "/CN=" + name
            with open(self.index, "a") as f:
                f.write("%s\t%s\t%s\t%X\tunknown\t%s\n" % (listed, exp, rev, cert.serial_number, dn))
        leaf = Leaf(cert, key, chain_path, key_path, cert_path)
        leaf.name = name  # the DNS name it is for
        return leaf

    def response(self, leaf, this_update, next_update, status=ocsp.OCSPCertStatus.GOOD):
        """A DER OCSP response for leaf signed by the CA itself, with the times given."""
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf.cert, issuer=self.ca, algorithm=hashes.SHA1(), cert_status=status,
            this_update=this_update, next_update=next_update, revocation_time=None,
            revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca)
        return b.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# Every responder started and not stopped yet: stopped when the test process exits, so that
# one left behind by a test or fixture that failed before its own clean-up never outlives
# the run (parented to init, holding its port).
_running = set()


def _stop_running():
    for r in list(_running):
        r.stop()


atexit.register(_stop_running)


class OpenSSLResponder:
    """`openssl ocsp -index` on 127.0.0.1:port, signing with the delegated responder."""

    def __init__(self, pki, port, log_path):
        self.pki = pki
        self.port = port
        self.log_path = log_path
        self.proc = None

    def start(self):
        cmd = ["openssl", "ocsp", "-index", str(self.pki.index), "-port", str(self.port),  # OpenSSL 3.0 takes no address here
              
               "-rsigner", str(self.pki.rcert_path), "-rkey", str(self.pki.rkey_path),
               "-CA", str(self.pki.ca_path), "-ndays", "1"]
        self.log_path.write_bytes(b"")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _running.add(self)
        try:
            ok = cbe2e.poll_until(lambda: self._listening(), 20)
            assert ok, "openssl ocsp did not listen on %d: %s" % (self.port,
                                                                 self.log_path.read_text())
        except BaseException:
            self.stop()
            raise
        return self

    def _listening(self):
        # Its log says when it listens; a probe connection would hang it (it waits on the
        # first connection for a request, alone).
        assert self.proc.poll() is None, "openssl ocsp exited: " + self.log_path.read_text()
        return "ACCEPT" in self.log_path.read_text(errors="replace")

    def stop(self):
        _running.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class CraftedResponder:
    """An HTTP server that answers POST /MODE: "junk" (bytes that are not OCSP), "hang..."
    (reads the request and never answers until close()), "500", or a DER set with
    set_response(MODE, der)."""

    def __init__(self):
        self.responses = {}
        self.hung = threading.Event()  # a request to /hang is being held
        self.held = {}  # MODE -> Event: a request to /MODE (hang...) is being held
        self.requests = {}  # MODE -> how many requests to /MODE arrived
        self.release = threading.Event()
        self.lock = threading.Lock()
        kit = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                mode = self.path.strip("/")
                with kit.lock:
                    kit.requests[mode] = kit.requests.get(mode, 0) + 1
                if mode.startswith("hang"):
                    kit.held.setdefault(mode, threading.Event()).set()
                    if mode == "hang":
                        kit.hung.set()
                    kit.release.wait(60)
                    return
                if mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = b"this is not an OCSP response" if mode == "junk" else kit.responses.get(mode, b"")
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode):
        return "http://127.0.0.1:%d/%s" % (self.port, mode)

    def set_response(self, mode, der):
        self.responses[mode] = der

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def staple_text(port, sni, tls):
    """openssl s_client -status output for one handshake (tls: "-tls1_2" or "-tls1_3")."""
    rc, out = cbe2e.s_client("127.0.0.1", port, sni=sni, extra=("-status", tls))
    assert "Verify return code" in out or "CONNECTED" in out, out
    return rc, out


def stapled(out):
    return "OCSP Response Status: successful" in out


def no_staple(out):
    return "OCSP response: no response sent" in out


def manager_pid(srv):
    """The pid of serve's manager process (cb-manager), or None."""
    for pid in srv.children():
        try:
            if open("/proc/%d/comm" % pid).read().strip() == "cb-manager":
                return pid
        except OSError:
            pass
    return None
