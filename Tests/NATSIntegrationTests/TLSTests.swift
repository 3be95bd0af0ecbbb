import Foundation
import NATSTestSupport
import Testing

@testable import NATS

@Suite(.timeLimit(.minutes(1))) struct TLSTests {
    static let certs = Task { try await TestCertificates.generate() }

    func tlsConfig(verifyClients: Bool = false, handshakeFirst: Bool = false) async throws -> String {
        let c = try await Self.certs.value
        return """
            tls {
              cert_file: "\(c.serverCertFile)"
              key_file: "\(c.serverKeyFile)"
              ca_file: "\(c.caFile)"
              verify: \(verifyClients)
              handshake_first: \(handshakeFirst)
              timeout: 10  # the 0.5 s default is too short on a loaded 2-core machine
            }
            """
    }

    @Test func serverRequiredTLSWithOurCA() async throws {
        let c = try await Self.certs.value
        try await NATSServer.with(.init(config: try await tlsConfig())) { server in
            try await withClient([server.url], configure: { $0.tls = .init(caFile: c.caFile) }) { client in
                #expect(client.serverInfo?.tlsRequired == true)
                let sub = try await client.subscribe(to: "secure")
                try await client.publish("over tls", to: "secure")
                #expect(try await sub.collect(1).first?.string == "over tls")
                // Requests go through NIO (and TLS): no socket is kept to write past it.
                try await client.subscribe(to: "svc") { m in try await m.respond(m.bytes, using: client) }
                try await client.flush()
                #expect(try await client.request("sealed", to: "svc").string == "sealed")
                #expect(client.state.withLock { $0.directWriter } == nil)
            }
            // tls:// in the URL also asks for TLS.
            try await withClient(["tls://localhost:\(server.port)"], configure: { $0.tls = .init(caFile: c.caFile) }) {
                client in #expect(client.isConnected)
            }
        }
    }

    @Test func untrustedServerCertificateIsATLSFailure() async throws {
        try await NATSServer.with(.init(config: try await tlsConfig())) { server in
            var config = testConfig([server.url])
            config.tls = .init()  // system roots: our test CA is not among them
            let error = await #expect(throws: NATSError.self) { try await NATSClient(configuration: config).connect() }
            #expect(error?.code == .tlsFailure, "got \(String(describing: error))")
        }
    }

    @Test func serverNameIsVerified() async throws {
        let c = try await TestCertificates.generate(includeIPAddress: false)
        let config = """
            tls { cert_file: "\(c.serverCertFile)", key_file: "\(c.serverKeyFile)", timeout: 10 }
            """
        try await NATSServer.with(.init(config: config)) { server in
            func connect(serverName: String?) async throws {
                var config = testConfig([server.url])
                config.tls = .init(caFile: c.caFile)
                config.tls?.serverName = serverName
                let client = NATSClient(configuration: config)
                try await client.connect()
                await client.close()
            }
            try await connect(serverName: "localhost")
            for wrong in ["not-in-the-certificate.example", nil] {
                let error = await #expect(throws: NATSError.self) { try await connect(serverName: wrong) }
                #expect(error?.code == .tlsFailure, "\(wrong ?? "no name"): got \(String(describing: error))")
            }
        }
    }

    @Test func mutualTLSWithAClientCertificate() async throws {
        let c = try await Self.certs.value
        try await NATSServer.with(.init(config: try await tlsConfig(verifyClients: true))) { server in
            try await withClient(
                [server.url],
                configure: {
                    $0.tls = .init(caFile: c.caFile, certificateFile: c.clientCertFile, keyFile: c.clientKeyFile)
                }
            ) { client in #expect(client.isConnected) }
            var config = testConfig([server.url])
            config.tls = .init(caFile: c.caFile)
            await #expect(throws: NATSError.self) { try await NATSClient(configuration: config).connect() }
        }
    }

    @Test func tlsHandshakeFirst() async throws {
        let c = try await Self.certs.value
        try await NATSServer.with(.init(config: try await tlsConfig(handshakeFirst: true))) { server in
            try await withClient([server.url], configure: { $0.tls = .init(caFile: c.caFile, handshakeFirst: true) }) {
                client in
                try await client.subscribe(to: "svc") { m in try await m.respond(m.bytes, using: client) }
                try await client.flush()
                #expect(try await client.request("first", to: "svc").string == "first")
            }
        }
    }
}
