"""A local OTLP/HTTP receiver for the tracing test (standard library only).

Listens on 127.0.0.1 (any free port), prints "listening PORT", then one JSON line per span received on
POST /v1/traces (OTLP JSON): {"name", "trace_id", "span_id", "parent_span_id", "kind", "attributes"}, the
attribute values as text.
A protobuf export is acknowledged and reported as {"received": CONTENT_TYPE, "path", "bytes"}.
IDs are printed as hex: swift-otel's JSON carries them base64-encoded (SwiftProtobuf's bytes encoding),
the OTLP spec says hex; both are accepted.
"""
import base64
import binascii
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def hex_id(value, length):
    if not value:
        return ""
    if len(value) == length * 2:
        try:
            bytes.fromhex(value)
            return value.lower()
        except ValueError:
            pass
    try:
        return base64.b64decode(value).hex()
    except (binascii.Error, ValueError):
        return value


def plain(value):
    """An OTLP AnyValue as text (what the test compares)."""
    for key in ("stringValue", "intValue", "doubleValue"):
        if key in value:
            return str(value[key])
    if "boolValue" in value:
        return "true" if value["boolValue"] else "false"
    return json.dumps(value)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        content_type = self.headers.get("Content-Type", "")
        if "json" not in content_type:
            # OTLP protobuf (what `nex node up --traces` sends): acknowledged and reported, not decoded.
            print(json.dumps({"received": content_type, "path": self.path, "bytes": len(body)}), flush=True)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()
            return
        try:
            request = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            print(json.dumps({"error": "not OTLP JSON"}), flush=True)
            return
        for resource in request.get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    print(json.dumps({
                        "name": span.get("name"),
                        "trace_id": hex_id(span.get("traceId"), 16),
                        "span_id": hex_id(span.get("spanId"), 8),
                        "parent_span_id": hex_id(span.get("parentSpanId"), 8),
                        "kind": span.get("kind"),
                        "attributes": {a["key"]: plain(a.get("value", {})) for a in span.get("attributes", [])},
                    }), flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
