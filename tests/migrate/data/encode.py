#!/usr/bin/env python3
"""Writes each netsh-*.utf8.txt (LF) again as Windows saves it: UTF-16LE with a BOM and
CRLF (Windows PowerShell 5.1: `netsh http show sslcert > FILE`) and UTF-8 with a BOM and
CRLF (`| Out-File -Encoding utf8 FILE`). Run it from this folder after editing a source."""
import glob

for src in sorted(glob.glob("netsh-*.utf8.txt")):
    text = open(src, encoding="utf-8", newline="").read().replace("\n", "\r\n")
    base = src[: -len(".utf8.txt")]
    with open(base + ".utf16le-bom-crlf.txt", "wb") as f:
        f.write(b"\xff\xfe" + text.encode("utf-16-le"))
    with open(base + ".utf8-bom-crlf.txt", "wb") as f:
        f.write(b"\xef\xbb\xbf" + text.encode("utf-8"))
