"""Headless Chromium driven over the DevTools protocol (Debian's chromium and
python3-websocket), for the status page test.

Chromium is started by the test, in its own process group, and stopped by its PID
(then its group, for the helper processes it forked) in close().
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-sync", "--mute-audio", "--window-size=1400,900",
         "--remote-debugging-port=0"]


def find_chromium():
    for name in CHROMIUM_NAMES:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


class Chromium:
    def __init__(self, exe, timeout=60):
        self.exe = exe
        self.proc = None
        self.ws = None
        self.msg_id = 0
        self.events = []
        self.tmp = Path(tempfile.mkdtemp(prefix="cb-chromium-"))
        self.log_path = self.tmp / "chromium.log"
        last = ""
        for headless in ("--headless=new", "--headless"):
            self._start(headless)
            port = self._devtools_port(timeout)
            if port:
                self.port = port
                break
            last = self.log()
            self._kill()
        else:
            self.close()
            raise AssertionError("chromium did not open its DevTools port; log:\n" + last[-4000:])

    def _start(self, headless):
        ud = self.tmp / ("profile%s" % headless.replace("=", "-"))
        ud.mkdir()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, headless] + FLAGS + ["--user-data-dir=%s" % ud, "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env=dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC"))
        self.user_data = ud

    def _devtools_port(self, timeout):
        f = self.user_data / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return None
            try:
                first = f.read_text().splitlines()[0].strip()
                if first.isdigit():
                    return int(first)
            except (OSError, IndexError):
                pass
            time.sleep(0.1)
        return None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---- the protocol ---------------------------------------------------------------------

    def open_page(self, url="about:blank"):
        """Creates a page target and attaches to it over a WebSocket."""
        import websocket

        base = "http://127.0.0.1:%d" % self.port
        req = urllib.request.Request("%s/json/new?%s" % (base, url), method="PUT")
        try:
            target = json.loads(urllib.request.urlopen(req, timeout=30).read())
        except Exception:
            # Older versions: GET, or the page target already open.
            targets = json.loads(urllib.request.urlopen(base + "/json", timeout=30).read())
            target = [t for t in targets if t.get("type") == "page"][0]
        # Chromium refuses WebSocket clients that send an Origin it does not allow.
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.send("Page.enable")
        self.send("Runtime.enable")
        return target

    def send(self, method, timeout=60, **params):
        self.msg_id += 1
        mid = self.msg_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise AssertionError("%s failed: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
            if time.monotonic() >= deadline:
                raise AssertionError("no answer to %s within %ss" % (method, timeout))

    def navigate(self, url):
        r = self.send("Page.navigate", url=url)
        assert not r.get("errorText"), r

    def evaluate(self, expression):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError("%s threw: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def text(self):
        """What a person sees: the body's rendered text."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_text(self, pred, timeout, what):
        """Polls the page's text until pred(text) holds; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.text()
            if pred(t):
                return t
            if time.monotonic() >= deadline:
                raise AssertionError("the page did not show %s within %ss; it shows:\n%s"
                                     % (what, timeout, t))
            time.sleep(0.25)

    def screenshot(self, path):
        r = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(r["data"])
        Path(path).write_bytes(data)
        return data

    # ---- stopping ---------------------------------------------------------------------------

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        # Its helpers (zygote, renderers, GPU process) share the group we created for it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.05)
        self.proc = None

    def close(self):
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:
                pass
            self.ws = None
        self._kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
