import Foundation
import Testing

@testable import NATS

/// `nats` CLI contexts (ADR-21) read from a temporary XDG_CONFIG_HOME.
@Suite struct NATSContextTests {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("nats-context-\(UUID().uuidString)").path

    func write(_ name: String, _ json: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/nats/context", withIntermediateDirectories: true)
        try json.write(toFile: root + "/nats/context/\(name).json", atomically: true, encoding: .utf8)
    }

    var environment: [String: String] { ["XDG_CONFIG_HOME": root, "HOME": "/home/someone"] }

    @Test func noContextSelectedMeansNone() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(try NATSContext.load(environment: environment) == nil)
    }

    @Test func theSelectedContextAndItsFields() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write(
            "orders",
            """
            {"description": "orders", "url": "nats://a:4222, nats://b:4222", "user": "u", "password": "p",
             "creds": "", "nkey": "", "cert": "~/tls/cert.pem", "key": "~/tls/key.pem", "ca": "/etc/ca.pem",
             "inbox_prefix": "_INBOX_orders", "jetstream_domain": "hub", "tls_first": true,
             "color_scheme": "", "windows_cert_store": ""}
            """)
        try "orders\n".write(toFile: root + "/nats/context.txt", atomically: true, encoding: .utf8)
        let context = try #require(try NATSContext.load(environment: environment))
        #expect(context.name == "orders" && context.servers == ["nats://a:4222", "nats://b:4222"])
        #expect(context.certificate == "/home/someone/tls/cert.pem" && context.key == "/home/someone/tls/key.pem")
        #expect(context.credentials == nil && context.jetStreamDomain == "hub")
        let config = try context.configuration()
        #expect(config.servers == ["nats://a:4222", "nats://b:4222"] && config.inboxPrefix == "_INBOX_orders")
        #expect(config.tls?.handshakeFirst == true && config.tls?.caFile == "/etc/ca.pem")
        guard case .userPassword("u", "p") = config.auth else {
            Issue.record("expected user and password, got \(config.auth)")
            return
        }
    }

    @Test func aNamedContextWinsOverTheEnvironmentAndTheSelection() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("a", #"{"url": "nats://a:4222"}"#)
        try write("b", #"{"url": "nats://b:4222", "token": "t"}"#)
        try write("c", #"{}"#)
        try "a".write(toFile: root + "/nats/context.txt", atomically: true, encoding: .utf8)
        var env = environment
        env["NATS_CONTEXT"] = "b"
        #expect(try NATSContext.load(environment: env)?.servers == ["nats://b:4222"])
        #expect(try NATSContext.load(named: "c", environment: env)?.servers == ["nats://127.0.0.1:4222"])
        guard case .token("t") = try NATSContext.load(environment: env)?.configuration().auth else {
            Issue.record("expected the token of context b")
            return
        }
    }

    @Test func aUserJWTSignsWithTheNkeySeed() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try "SUAEXAMPLESEED\n".write(toFile: root + "/user.nk", atomically: true, encoding: .utf8)
        try write("jwt", #"{"user_jwt": "eyJ.x.y", "nkey": "\#(root)/user.nk"}"#)
        let auth = try NATSContext.load(named: "jwt", environment: environment)?.auth()
        guard case .jwt("eyJ.x.y", seed: "SUAEXAMPLESEED") = auth else {
            Issue.record("expected a JWT with the nkey's seed")
            return
        }
    }

    @Test func refusalsSayWhatToDo() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write("viansc", #"{"nsc": "nsc://operator/account/user"}"#)
        try write("socks", #"{"url": "nats://a:4222", "socks_proxy": "127.0.0.1:1080"}"#)
        try write("broken", #"{"url": 4222}"#)
        let cases: [(String, String)] = [
            ("viansc", "nats context edit viansc"), ("socks", "SOCKS proxy"), ("broken", "not valid JSON"),
            ("missing", "`nats context ls` lists the contexts"), ("../etc/passwd", "is not a nats context name"),
        ]
        for (name, expected) in cases {
            #expect(throws: NATSError.self) { try NATSContext.load(named: name, environment: environment) }
            do { _ = try NATSContext.load(named: name, environment: environment) } catch {
                #expect(error.message.contains(expected), "\(name): \(error.message)")
            }
        }
    }

    @Test func withoutXDGTheContextsAreUnderHome() {
        #expect(NATSContext.configDirectory(environment: ["HOME": "/home/u"]) == "/home/u/.config/nats")
        #expect(NATSContext.configDirectory(environment: ["HOME": "/home/u", "XDG_CONFIG_HOME": "/x"]) == "/x/nats")
    }
}
