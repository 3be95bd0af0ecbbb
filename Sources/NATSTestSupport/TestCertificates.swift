import Foundation

/// A throwaway CA with a server certificate (for 127.0.0.1 and localhost) and a client certificate,
/// made with the `openssl` command in a temp dir.
public struct TestCertificates: Sendable {
    public let directory: URL
    public var caFile: String { directory.appendingPathComponent("ca.pem").path }
    public var serverCertFile: String { directory.appendingPathComponent("server.pem").path }
    public var serverKeyFile: String { directory.appendingPathComponent("server-key.pem").path }
    public var clientCertFile: String { directory.appendingPathComponent("client.pem").path }
    public var clientKeyFile: String { directory.appendingPathComponent("client-key.pem").path }

    /// Generates the CA and both certificates. With `includeIPAddress` false the server certificate names
    /// only `localhost`, so connecting by IP must name the server explicitly.
    public static func generate(includeIPAddress: Bool = true) async throws -> TestCertificates {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nats-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let certs = TestCertificates(directory: dir)
        let openssl = "/usr/bin/openssl"
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        try await TestEnvironment.run(
            openssl,
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=nex-test-ca", "-keyout", path("ca-key.pem"), "-out", certs.caFile,
            ])
        for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
            let names = includeIPAddress ? "IP:127.0.0.1,DNS:localhost" : "DNS:localhost"
            try "subjectAltName=\(names)\nextendedKeyUsage=\(usage)\n".write(
                toFile: path("\(name).ext"), atomically: true, encoding: .utf8)
            try await TestEnvironment.run(
                openssl,
                [
                    "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                    "/CN=\(name)",
                    "-keyout", path("\(name)-key.pem"), "-out", path("\(name).csr"),
                ])
            try await TestEnvironment.run(
                openssl,
                [
                    "x509", "-req", "-in", path("\(name).csr"), "-CA", certs.caFile, "-CAkey", path("ca-key.pem"),
                    "-CAcreateserial", "-days", "2", "-extfile", path("\(name).ext"), "-out", path("\(name).pem"),
                ])
        }
        return certs
    }
}
