"""A local HTTP server for the http host-service tests: answers every method with JSON describing the request,
and `/redirect?to=URL` with a 302 to URL. Prints its port on the first line."""
import json
import sys
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


server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
print(server.server_address[1], flush=True)
server.serve_forever()
