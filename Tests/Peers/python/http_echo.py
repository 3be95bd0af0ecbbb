"""A local HTTP server for the http host-service tests: answers every method with JSON describing the request,
and `/redirect?to=URL` with a 302 to URL. Prints its port on the first line."""
import errno
import json
import socket
import sys
import threading
from urllib.parse import unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def answer(self):
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("location", unquote(self.path[len("/redirect?to="):]))
            self.send_header("content-length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        out = json.dumps({"method": self.command, "path": self.path, "x_from": self.headers.get("x-from"),
                          "body": body}).encode()
        self.send_response(200 if self.command != "DELETE" else 204)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out) if self.command not in ("HEAD", "DELETE") else 0))
        self.end_headers()
        if self.command not in ("HEAD", "DELETE"):
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = answer

    def log_message(self, *args):
        pass


class EchoV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


# One port on 127.0.0.1 and on ::1: "localhost" may resolve to either, and the other address's port must not
# belong to some other process.
for _ in range(100):
    v4 = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    port = v4.server_address[1]
    try:
        v6 = EchoV6(("::1", port), Echo)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            v4.server_close()
            continue
        v6 = None  # no IPv6 loopback here: connecting to ::1 fails and the client moves on
    break
else:
    sys.exit("no port is free on both 127.0.0.1 and ::1")
if v6:
    threading.Thread(target=v6.serve_forever, daemon=True).start()
print(port, flush=True)
v4.serve_forever()
