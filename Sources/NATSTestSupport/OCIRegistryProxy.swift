import Foundation

/// A registry front of the test's own, before a real registry: it asks for basic credentials itself, can answer
/// the first requests with 503 (a registry shedding load), and can redirect blob downloads with 307 to a second
/// host (127.0.0.2, as a registry sends clients to its storage) that serves them. Every request is logged, with
/// whether it carried an `Authorization` header. Python's standard library serves it.
public final class OCIRegistryProxy: Sendable {
    /// The front, `127.0.0.1:PORT`: what clients are given as the registry.
    public let address: String
    /// The host blobs are redirected to, `127.0.0.2:PORT`.
    public let blobHost: String
    private let server: LoggedServer
    private let directory: String

    private init(address: String, blobHost: String, server: LoggedServer, directory: String) {
        self.address = address
        self.blobHost = blobHost
        self.server = server
        self.directory = directory
    }

    /// What was asked: `front|blobs STATUS METHOD PATH auth=yes|no`, one line per request.
    public var requests: [String] {
        server.lines.filter { $0.hasPrefix("front ") || $0.hasPrefix("blobs ") }
    }

    /// A proxy to `upstream` for the length of `body`, stopped (and its directory removed) afterwards.
    public static func with<T>(
        upstream: String, username: String, password: String, failures: Int = 0, redirectBlobs: Bool = false,
        trickleBlobs: Bool = false, _ body: (OCIRegistryProxy) async throws -> T
    ) async throws -> T {
        let proxy = try await start(
            upstream: upstream, username: username, password: password, failures: failures,
            redirectBlobs: redirectBlobs, trickleBlobs: trickleBlobs)
        do {
            let result = try await body(proxy)
            await proxy.stop()
            return result
        } catch {
            await proxy.stop()
            throw error
        }
    }

    /// Starts the proxy: requests to the front without `username`:`password` get a basic challenge; the first
    /// `failures` requests that carry them get 503; with `redirectBlobs`, a blob is a 307 to ``blobHost``; with
    /// `trickleBlobs`, a blob's bytes come one every 200 ms (soon enough for any idle timeout, never done).
    public static func start(
        upstream: String, username: String, password: String, failures: Int, redirectBlobs: Bool,
        trickleBlobs: Bool = false
    ) async throws -> OCIRegistryProxy {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let basic = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        let script = """
            import http.server, threading, time, urllib.request, urllib.error
            UPSTREAM = "http://\(upstream)"
            BASIC = "\(basic)"
            state = {"failures": \(failures)}
            lock = threading.Lock()
            blob_host = None

            def relay(handler, who, head):
                request = urllib.request.Request(UPSTREAM + handler.path, method="HEAD" if head else "GET")
                if handler.headers.get("Accept"):
                    request.add_header("Accept", handler.headers["Accept"])
                try:
                    answer = urllib.request.urlopen(request)
                    status, headers, body = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as error:
                    status, headers, body = error.code, error.headers, error.read()
                log(handler, who, status)  # before answering: a test that has the answer finds the line
                handler.send_response(status)
                for name in ("Content-Type", "Docker-Content-Digest"):
                    if headers.get(name):
                        handler.send_header(name, headers[name])
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                if not head:
                    handler.wfile.write(body)

            def log(handler, who, status):
                auth = "yes" if handler.headers.get("Authorization") else "no"
                print("%s %d %s %s auth=%s" % (who, status, handler.command, handler.path, auth), flush=True)

            class Front(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def answer(self, head):
                    if self.headers.get("Authorization") != BASIC:
                        log(self, "front", 401)
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="nex-test"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    with lock:
                        fail = state["failures"] > 0
                        state["failures"] -= 1 if fail else 0
                    if fail:
                        body = b'{"errors":[{"code":"UNAVAILABLE","message":"shedding load"}]}'
                        log(self, "front", 503)
                        self.send_response(503)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    if \(trickleBlobs ? "True" : "False") and "/blobs/" in self.path and not head:
                        log(self, "front", 200)
                        self.send_response(200)
                        self.send_header("Content-Length", str(1 << 20))
                        self.end_headers()
                        for _ in range(600):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.2)
                        return
                    if \(redirectBlobs ? "True" : "False") and "/blobs/" in self.path:
                        log(self, "front", 307)
                        self.send_response(307)
                        self.send_header("Location", "http://%s%s" % (blob_host, self.path))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    relay(self, "front", head)
                def do_GET(self):
                    self.answer(False)
                def do_HEAD(self):
                    self.answer(True)
                def log_message(self, *args):
                    pass

            class Blobs(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def do_GET(self):
                    relay(self, "blobs", False)
                def log_message(self, *args):
                    pass

            front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
            blobs = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Blobs)
            blob_host = "127.0.0.2:%d" % blobs.server_address[1]
            threading.Thread(target=blobs.serve_forever, daemon=True).start()
            print("listening on 127.0.0.1:%d %s" % (front.server_address[1], blob_host), flush=True)
            front.serve_forever()

            """
        try script.write(toFile: directory + "/proxy.py", atomically: true, encoding: .utf8)
        let server = try await LoggedServer.start(
            "/usr/bin/python3", ["-u", directory + "/proxy.py"], directory: directory, name: "the registry proxy"
        ) { line in
            line.hasPrefix("listening on ") ? String(line.dropFirst("listening on ".count)) : nil
        }
        let addresses = server.address.split(separator: " ").map(String.init)
        guard addresses.count == 2 else {
            await server.stop()
            throw TestEnvironment.Failure("the registry proxy logged \(server.address)")
        }
        return OCIRegistryProxy(address: addresses[0], blobHost: addresses[1], server: server, directory: directory)
    }

    public func stop() async {
        await server.stop()
        try? FileManager.default.removeItem(atPath: directory)  // best effort: a temp folder left fails no test
    }
}
