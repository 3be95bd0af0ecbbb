import Foundation
import NATS
import NATSTestSupport
import NKeys
import Testing

struct OperatorFixture: Decodable {
    var operator_jwt: String
    var system_account: String
    var system_account_jwt: String
    var account: String
    var account_jwt: String
    var account_seed: String
    var user_jwt: String
    var user_seed: String

    static func load() throws -> OperatorFixture {
        let url = try #require(
            Bundle.module.url(forResource: "operator", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(OperatorFixture.self, from: Data(contentsOf: url))
    }

    var serverConfig: String {
        """
        operator: \(operator_jwt)
        system_account: \(system_account)
        resolver: MEMORY
        resolver_preload: { \(system_account): \(system_account_jwt), \(account): \(account_jwt) }
        authorization { timeout: 10 }
        """
    }
}

@Suite(.timeLimit(.minutes(1))) struct AuthTests {
    func expectRejected(_ url: String, _ auth: NATSClient.Auth) async {
        var config = testConfig([url])
        config.auth = auth
        let client = NATSClient(configuration: config)
        let error = await #expect(throws: NATSError.self) { try await client.connect() }
        #expect(error?.code == .authorizationViolation, "got \(String(describing: error))")
    }

    @Test func token() async throws {
        try await NATSServer.with(.init(config: "authorization { token: s3cret, timeout: 10 }")) { server in
            try await withClient([server.url], configure: { $0.auth = .token("s3cret") }) { client in
                #expect(client.isConnected)
            }
            // The token may also come in the URL.
            try await withClient(["nats://s3cret@127.0.0.1:\(server.port)"]) { client in #expect(client.isConnected) }
            await expectRejected(server.url, .token("wrong"))
            await expectRejected(server.url, .none)
        }
    }

    @Test func userAndPassword() async throws {
        try await NATSServer.with(.init(config: "authorization { user: derek, password: \"p@ss w0rd\", timeout: 10 }"))
        { server in
            try await withClient(
                [server.url], configure: { $0.auth = .userPassword(user: "derek", password: "p@ss w0rd") }
            ) {
                client in #expect(client.isConnected)
            }
            try await withClient(["nats://derek:p%40ss%20w0rd@127.0.0.1:\(server.port)"]) { client in
                #expect(client.isConnected)
            }
            await expectRejected(server.url, .userPassword(user: "derek", password: "nope"))
        }
    }

    @Test func nkey() async throws {
        let user = NKeyPair.generate(.user)
        try await NATSServer.with(
            .init(config: "authorization { users = [ { nkey: \(user.publicKey) } ], timeout: 10 }")
        ) {
            server in
            try await withClient([server.url], configure: { $0.auth = .nkey(seed: user.seed!) }) { client in
                let sub = try await client.subscribe(to: "n")
                try await client.publish("ok", to: "n")
                #expect(try await sub.collect(1).first?.string == "ok")
            }
            await expectRejected(server.url, .nkey(seed: NKeyPair.generate(.user).seed!))
        }
    }

    @Test func credentialsFileInOperatorMode() async throws {
        let fixture = try OperatorFixture.load()
        try await NATSServer.with(.init(config: fixture.serverConfig)) { server in
            let path = server.directory.appendingPathComponent("user.creds").path
            try CredentialsFile(jwt: fixture.user_jwt, seed: fixture.user_seed).formatted
                .write(toFile: path, atomically: true, encoding: .utf8)
            try await withClient([server.url], configure: { $0.auth = .credentialsFile(path: path) }) { client in
                try await client.subscribe(to: "svc") { m in try await m.respond(m.bytes, using: client) }
                try await client.flush()
                #expect(try await client.request("in operator mode", to: "svc").string == "in operator mode")
            }
            try await withClient([server.url], configure: { $0.auth = .jwt(fixture.user_jwt, seed: fixture.user_seed) })
            {
                client in #expect(client.isConnected)
            }
            // The right JWT with another key cannot sign the nonce.
            await expectRejected(server.url, .jwt(fixture.user_jwt, seed: NKeyPair.generate(.user).seed!))
        }
    }

    @Test func userJWTsWeSignAreAcceptedWithTheirPermissions() async throws {
        let fixture = try OperatorFixture.load()
        let account = try NKeyPair(seed: fixture.account_seed)
        let user = NKeyPair.generate(.user)
        let claims = JWTClaims.user(
            publicKey: user.publicKey, name: "agent-1", account: account.publicKey,
            publishAllow: ["agent.1.>", "_INBOX.>"], subscribeAllow: ["agent.1.>", "_INBOX.>"])
        let token = try NATSJWT.encode(claims, signedBy: account)
        #expect(try NATSJWT.decode(token).nats["type"]?.stringValue == "user")
        try await NATSServer.with(.init(config: fixture.serverConfig)) { server in
            try await withClient([server.url], configure: { $0.auth = .jwt(token, seed: user.seed!) }) { client in
                let events = EventRecorder(client)
                let sub = try await client.subscribe(to: "agent.1.inbox")
                try await client.publish("mine", to: "agent.1.inbox")
                #expect(try await sub.collect(1).first?.string == "mine")
                try await client.publish("theirs", to: "agent.2.inbox")
                try await events.waitFor("publish outside the allowed subjects is refused") {
                    if case .error(let e) = $0 { return e.code == .permissionViolation && e.subject == "agent.2.inbox" }
                    return false
                }
            }
            // A user JWT signed by a key the operator does not know is refused.
            let stranger = NKeyPair.generate(.account)
            let bogus = try NATSJWT.encode(
                JWTClaims.user(publicKey: user.publicKey, name: "x", account: stranger.publicKey), signedBy: stranger)
            await expectRejected(server.url, .jwt(bogus, seed: user.seed!))
        }
    }

    @Test func unreadableCredentialsAreATypedError() async throws {
        try await NATSServer.with { server in
            var config = testConfig([server.url])
            config.auth = .credentialsFile(path: "/nonexistent/user.creds")
            let error = await #expect(throws: NATSError.self) { try await NATSClient(configuration: config).connect() }
            #expect(error?.code == .invalidCredentials)
            config.auth = .nkey(seed: "SUNOTASEED")
            let error2 = await #expect(throws: NATSError.self) { try await NATSClient(configuration: config).connect() }
            #expect(error2?.code == .invalidCredentials)
        }
    }
}
