import Foundation

/// A small bearer-token service of the test's own for a registry started with ``OCIRegistry/Auth/token``: it
/// hands out one JWT (RS256, its certificate in `x5c`, as distribution verifies) to a client that sends the right
/// basic credentials, and logs each token it issues. Python's standard library serves it; openssl signs.
public final class OCITokenServer: Sendable {
    /// `http://127.0.0.1:PORT/token`.
    public let realm: String
    /// The certificate the registry trusts (its `rootcertbundle`).
    public let certificate: String
    public let service = "nex-test-registry"
    public let issuer = "nex-test-issuer"
    private let server: LoggedServer
    private let directory: String

    private init(realm: String, certificate: String, server: LoggedServer, directory: String) {
        self.realm = realm
        self.certificate = certificate
        self.server = server
        self.directory = directory
    }

    /// A token service for the length of `body`, stopped (and its directory removed) afterwards.
    public static func with<T>(
        username: String, password: String, repositories: [String], lifetime: Int = 300,
        _ body: (OCITokenServer) async throws -> T
    ) async throws -> T {
        let tokens = try await start(
            username: username, password: password, repositories: repositories, lifetime: lifetime)
        do {
            let result = try await body(tokens)
            await tokens.stop()
            return result
        } catch {
            await tokens.stop()
            throw error
        }
    }

    /// How many tokens it has issued.
    public var issued: Int { server.lines.filter { $0.hasPrefix("issued ") }.count }

    /// The registry auth that trusts this service.
    public var auth: OCIRegistry.Auth {
        .token(realm: realm, service: service, issuer: issuer, certificate: certificate)
    }

    /// Starts the service; tokens grant pull and push on `repositories`, last `lifetime` seconds as far as the
    /// client is told (`expires_in`), and go only to `username`:`password`.
    public static func start(
        username: String, password: String, repositories: [String], lifetime: Int = 300
    ) async throws -> OCITokenServer {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await TestEnvironment.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", directory + "/key.pem", "-out",
                directory + "/cert.pem", "-days", "2", "-subj", "/CN=nex-test-token-issuer",
            ])
        let now = Int(Date().timeIntervalSince1970)
        try await TestEnvironment.run(
            "/usr/bin/openssl",
            ["x509", "-in", directory + "/cert.pem", "-outform", "DER", "-out", directory + "/cert.der"])
        let certificate = try Data(contentsOf: URL(fileURLWithPath: directory + "/cert.der")).base64EncodedString()
        let header: [String: Any] = ["typ": "JWT", "alg": "RS256", "x5c": [certificate]]
        let claims: [String: Any] = [
            "iss": "nex-test-issuer", "sub": username, "aud": "nex-test-registry", "exp": now + 3600,
            "nbf": now - 60, "iat": now - 60, "jti": UUID().uuidString,
            "access": repositories.map { ["type": "repository", "name": $0, "actions": ["pull", "push"]] },
        ]
        let signingInput =
            base64URL(try JSONSerialization.data(withJSONObject: header)) + "."
            + base64URL(try JSONSerialization.data(withJSONObject: claims))
        try signingInput.write(toFile: directory + "/input", atomically: true, encoding: .utf8)
        try await TestEnvironment.run(
            "/usr/bin/openssl",
            [
                "dgst", "-sha256", "-sign", directory + "/key.pem", "-out", directory + "/signature",
                directory + "/input",
            ])
        let signature = try Data(contentsOf: URL(fileURLWithPath: directory + "/signature"))
        let token = signingInput + "." + base64URL(signature)
        let basic = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        let script = """
            import http.server, json, sys
            TOKEN = \(quoted(token))
            BASIC = \(quoted(basic))
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_GET(self):
                    if not self.path.startswith("/token") or self.headers.get("Authorization") != BASIC:
                        self.send_response(401)
                        self.end_headers()
                        print("refused " + self.path, flush=True)
                        return
                    body = json.dumps({"token": TOKEN, "expires_in": \(lifetime)}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    print("issued " + self.path, flush=True)
                def log_message(self, *args):
                    pass
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
            server.serve_forever()

            """
        try script.write(toFile: directory + "/tokens.py", atomically: true, encoding: .utf8)
        let server = try await LoggedServer.start(
            "/usr/bin/python3", ["-u", directory + "/tokens.py"], directory: directory, name: "the token server"
        ) { line in
            line.hasPrefix("listening on ") ? String(line.dropFirst("listening on ".count)) : nil
        }
        return OCITokenServer(
            realm: "http://\(server.address)/token", certificate: directory + "/cert.pem", server: server,
            directory: directory)
    }

    public func stop() async {
        await server.stop()
        try? FileManager.default.removeItem(atPath: directory)  // best effort: a temp folder left fails no test
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func quoted(_ text: String) -> String { "\"" + text + "\"" }
}
