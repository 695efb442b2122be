"""TLS bytes by hand: a real ClientHello from Python's ssl (through memory BIOs), taken apart,
changed (SNI, extensions) and put back into records; and a reader for what the server answers
(alert, ServerHello, the TLS 1.2 Certificate message)."""

import ssl
import struct

CT_ALERT, CT_HANDSHAKE = 21, 22
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_CERTIFICATE, HS_SERVER_HELLO_DONE = 1, 2, 11, 14
EXT_SERVER_NAME, EXT_PADDING = 0, 21
MAX_FRAGMENT = 16384

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          22: "record_overflow", 40: "handshake_failure", 47: "illegal_parameter",
          50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
          86: "inappropriate_fallback", 109: "missing_extension", 110: "unsupported_extension",
          112: "unrecognized_name"}


def real_client_hello(sni, tls12=False):
    """The first flight of Python's ssl client: one or more TLS records (bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def records(data):
    """[(content_type, version, fragment)] of complete records; the rest is ignored."""
    out, i = [], 0
    while i + 5 <= len(data):
        ct, ver, n = struct.unpack("!BHH", data[i:i + 5])
        if i + 5 + n > len(data):
            break
        out.append((ct, ver, data[i + 5:i + 5 + n]))
        i += 5 + n
    return out


class ClientHello:
    """A parsed ClientHello handshake message, to change and serialise again."""

    def __init__(self, wire):
        recs = records(wire)
        assert recs and recs[0][0] == CT_HANDSHAKE, wire[:10]
        self.record_version = recs[0][1]
        hs = b"".join(r[2] for r in recs)
        assert hs[0] == HS_CLIENT_HELLO
        n = int.from_bytes(hs[1:4], "big")
        body = hs[4:4 + n]
        i = 2 + 32
        sid_len = body[i]
        i += 1 + sid_len
        cs_len = int.from_bytes(body[i:i + 2], "big")
        i += 2 + cs_len
        comp_len = body[i]
        i += 1 + comp_len
        self.head = body[:i]  # version, random, session id, ciphers, compression
        ext_len = int.from_bytes(body[i:i + 2], "big")
        exts = body[i + 2:i + 2 + ext_len]
        self.extensions = []
        j = 0
        while j < len(exts):
            t, ln = struct.unpack("!HH", exts[j:j + 4])
            self.extensions.append((t, exts[j + 4:j + 4 + ln]))
            j += 4 + ln

    def copy(self):
        c = object.__new__(ClientHello)
        c.record_version = self.record_version
        c.head = self.head
        c.extensions = list(self.extensions)
        return c

    def set_ext(self, ext_type, data):
        """Replaces (or adds, before the last extension) an extension."""
        for k, (t, _) in enumerate(self.extensions):
            if t == ext_type:
                self.extensions[k] = (ext_type, data)
                return self
        # pre_shared_key must stay last; Python sends none on a first hello, but be safe.
        self.extensions.insert(max(0, len(self.extensions) - 1), (ext_type, data))
        return self

    def drop_ext(self, ext_type):
        self.extensions = [(t, d) for t, d in self.extensions if t != ext_type]
        return self

    def add_ext(self, ext_type, data, first=False):
        if first:
            self.extensions.insert(0, (ext_type, data))
        else:
            self.extensions.insert(max(0, len(self.extensions) - 1), (ext_type, data))
        return self

    def handshake(self):
        exts = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in self.extensions)
        body = self.head + struct.pack("!H", len(exts)) + exts
        return bytes([HS_CLIENT_HELLO]) + len(body).to_bytes(3, "big") + body

    def wire(self, fragment=MAX_FRAGMENT):
        """As TLS records of at most `fragment` bytes each (None: one record, any size)."""
        return wrap_records(self.handshake(), self.record_version, fragment)


def wrap_records(payload, version=0x0301, fragment=MAX_FRAGMENT, ct=CT_HANDSHAKE):
    if fragment is None:
        fragment = len(payload)
    out = b""
    for i in range(0, len(payload), fragment):
        part = payload[i:i + fragment]
        out += struct.pack("!BHH", ct, version, len(part) & 0xFFFF) + part
    return out


def sni_ext(name, name_type=0, list_len_delta=0, trailing=b""):
    """A server_name extension body for raw bytes `name`."""
    entry = bytes([name_type]) + struct.pack("!H", len(name)) + name + trailing
    return struct.pack("!H", len(entry) + list_len_delta) + entry


class Answer:
    """What the server sent back: kind is close, alert, server_hello or other."""

    def __init__(self, data, how):
        self.data, self.how = data, how
        self.alert = None
        self.cert = None
        self.version = None
        recs = records(data)
        if not recs:
            self.kind = "close"
            return
        ct, _, frag = recs[0]
        if ct == CT_ALERT and len(frag) >= 2:
            self.kind = "alert"
            self.alert = ALERTS.get(frag[1], str(frag[1]))
            return
        if ct != CT_HANDSHAKE or not frag or frag[0] != HS_SERVER_HELLO:
            self.kind = "other"
            return
        self.kind = "server_hello"
        # Plaintext handshake messages (TLS 1.2 sends its Certificate in the clear).
        hs = b"".join(f for c, _, f in recs if c == CT_HANDSHAKE)
        i = 0
        while i + 4 <= len(hs):
            t, n = hs[i], int.from_bytes(hs[i + 1:i + 4], "big")
            msg = hs[i + 4:i + 4 + n]
            if len(msg) < n:
                break
            if t == HS_SERVER_HELLO:
                self.version = int.from_bytes(msg[0:2], "big")
                if any(e == b"\x00\x2b" for e in _ext_types(msg)):
                    self.version = 0x0304
            elif t == HS_CERTIFICATE and n >= 6:
                ln = int.from_bytes(msg[3:6], "big")
                self.cert = msg[6:6 + ln]
            i += 4 + n

    def __repr__(self):
        return "<%s%s%s via %s, %d bytes>" % (
            self.kind, " " + self.alert if self.alert else "",
            " cert" if self.cert else "", self.how, len(self.data))


def _ext_types(server_hello):
    """The extension types of a ServerHello body, as 2-byte strings."""
    try:
        i = 2 + 32
        i += 1 + server_hello[i]
        i += 2 + 1
        n = int.from_bytes(server_hello[i:i + 2], "big")
        exts = server_hello[i + 2:i + 2 + n]
        out, j = [], 0
        while j + 4 <= len(exts):
            out.append(exts[j:j + 2])
            j += 4 + int.from_bytes(exts[j + 2:j + 4], "big")
        return out
    except IndexError:
        return []
