"""A stand-in for the firecracker binary, for the firecracker driver's tests (no VM can run here).

Serves Firecracker's API on --api-sock: records each request as a JSON line in <api-sock>.requests and
answers 204. On InstanceStart it plays the guest's part over the vsock Unix sockets the API named: it
writes "hello-link" to the agent's link (port 4223) and fetches the artifact on the control channel (4224),
recording what happened.
"""
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler
from socketserver import ThreadingMixIn, UnixStreamServer

args = sys.argv[1:]
api = args[args.index("--api-sock") + 1]
log_path = api + ".requests"
state = {"vsock": None}
lock = threading.Lock()


def record(entry):
    with lock, open(log_path, "a") as log:
        log.write(json.dumps(entry) + "\n")


def play_guest():
    base = state["vsock"]
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.connect(base + "_4223")
    link.sendall(b"hello-link")
    record({"guest": "link", "sent": "hello-link"})
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(base + "_4224")
    reader = control.makefile("rb")
    settings = reader.readline().decode().strip()
    control.sendall(b"ARTIFACT\n")
    header = reader.readline().decode().strip()
    size = int(header.split(" ")[1]) if header.startswith("OK ") else 0
    body = reader.read(size).decode(errors="replace")
    record({"guest": "control", "settings": settings, "artifact_header": header, "artifact": body})
    control.close()
    link.close()


class Handler(BaseHTTPRequestHandler):
    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {"method": "PUT", "path": self.path, "body": json.loads(body or b"{}")}
        record(entry)
        if self.path == "/vsock":
            state["vsock"] = entry["body"]["uds_path"]
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if self.path == "/actions" and entry["body"].get("action_type") == "InstanceStart":
            threading.Thread(target=play_guest, daemon=True).start()

    def log_message(self, *args):
        pass


class Server(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True


if os.path.exists(api):
    os.unlink(api)
Server(api, Handler).serve_forever()
