"""Drives headless Chromium over the DevTools protocol for the dashboard test, with the standard library only.

Usage: browser.py CHROMIUM URL STEP...
Steps run in order, each waiting up to 30 s:
  wait:CSS             until an element matches CSS
  text:CSS=TEXT        until the first element matching CSS contains TEXT (which has no "=")
  until:JS             until the JavaScript expression is true
  click:CSS            click the first element matching CSS (confirm() dialogs are accepted)
  screenshot:PATH      save a PNG of the page
Prints "ok STEP" per step; exits 1 with the reason and the page's text when a step times out.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

TIMEOUT = 30.0


class DevTools:
    """A minimal WebSocket client (RFC 6455, text frames, client masking) speaking CDP."""

    def __init__(self, url):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + head.split(b"\r\n")[0].decode())
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _send(self, text):
        data = text.encode()
        header = bytearray([0x81])
        if len(data) < 126:
            header.append(0x80 | len(data))
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _receive(self):
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: not sent by Chromium to clients in practice
                continue
            message += payload
            if first & 0x80:
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        self._send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("method") == "Page.javascriptDialogOpening":
                self._send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                       "params": {"accept": True}}))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "script failed"))
        return result["result"].get("value")


def until(devtools, expression, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if devtools.evaluate(expression):
            return
        time.sleep(0.1)
    page = devtools.evaluate("document.body ? document.body.innerText : ''")
    sys.exit(f"timed out waiting for {what}\n--- page text ---\n{page}")


def main():
    chromium, url, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
    profile = tempfile.mkdtemp(prefix="nex-chromium-")
    browser = subprocess.Popen(
        # The headless shell is headless by build; full Chromium is told. As root, Chromium needs --no-sandbox.
        [chromium] + ([] if "headless-shell" in chromium else ["--headless=new"]) + ["--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-extensions",
         "--disable-sync", "--metrics-recording-only", "--user-data-dir=" + profile,
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1400,1000",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # Its own process group, so its zygote, GPU and renderer processes end with it (killing the browser
        # process alone leaves them running).
        start_new_session=True)
    try:
        endpoint = None
        deadline = time.monotonic() + TIMEOUT
        while endpoint is None and time.monotonic() < deadline:
            line = browser.stderr.readline()
            if not line:
                sys.exit("chromium exited before it listened for DevTools")
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                endpoint = match.group(1)
        if endpoint is None:
            sys.exit("chromium did not start DevTools in time")
        # The browser endpoint; a page target is made and attached to with a flat session.
        browser_tools = DevTools(endpoint)
        target = browser_tools.call("Target.createTarget", url="about:blank")["targetId"]
        port = urlparse(endpoint).port
        page = DevTools(f"ws://127.0.0.1:{port}/devtools/page/{target}")
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Page.navigate", url=url)
        until(page, "document.readyState === 'complete'", "the page to load")
        print("ok load", flush=True)
        for step in steps:
            kind, _, arg = step.partition(":")
            if kind == "wait":
                until(page, f"document.querySelector({json.dumps(arg)}) !== null", arg)
            elif kind == "text":
                css, _, expected = arg.rpartition("=")
                until(page, f"(document.querySelector({json.dumps(css)})?.textContent || '')"
                            f".includes({json.dumps(expected)})", f"{css} to contain {expected!r}")
            elif kind == "until":
                until(page, f"Boolean({arg})", arg)
            elif kind == "click":
                until(page, f"document.querySelector({json.dumps(arg)}) !== null", arg)
                # confirm() is answered by the dialog handler in call(); replace it so no dialog blocks the page.
                page.evaluate("window.confirm = () => true")
                page.evaluate(f"document.querySelector({json.dumps(arg)}).click()")
            elif kind == "screenshot":
                shot = page.call("Page.captureScreenshot", format="png")["data"]
                with open(arg, "wb") as f:
                    f.write(base64.b64decode(shot))
            else:
                sys.exit(f"unknown step {step!r}")
            print("ok " + step, flush=True)
    finally:
        stop(browser)
        shutil.rmtree(profile, ignore_errors=True)


def stop(browser):
    """SIGTERM to the browser's process group (Chromium closes its children), SIGKILL after 5 s."""
    try:
        os.killpg(browser.pid, signal.SIGTERM)
        browser.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
    except ProcessLookupError:
        browser.wait()
    # Children that outlived the browser process itself.
    try:
        os.killpg(browser.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main()
