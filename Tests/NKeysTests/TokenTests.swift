import Foundation
import NATSTestSupport
import NKeys
import Testing

/// Keys, tokens and a sealed env produced by the Go libraries Nex 0.x pinned (nats-io/jwt v2.5.8, nkeys v0.4.7).
struct GoVectors: Decodable {
    var deploy_jwt: String
    var stop_jwt: String
    var issuer_public: String
    var issuer_seed: String
    var plaintext: String
    var recipient_public: String
    var recipient_seed: String
    var sealed_b64: String
    var sender_public: String
    var sender_seed: String

    static let loaded: GoVectors = {
        let url = Bundle.module.url(forResource: "go_nex0x_vectors", withExtension: "json", subdirectory: "Vectors")!
        return try! JSONDecoder().decode(GoVectors.self, from: Data(contentsOf: url))
    }()
}

struct XKeyVector: Decodable, Sendable, CustomTestStringConvertible {
    var sender_seed: String
    var sender_public: String
    var recipient_seed: String
    var recipient_public: String
    var plaintext_b64: String
    var sealed_b64: String
    var testDescription: String { "\(Data(base64Encoded: plaintext_b64)!.count)-byte message" }

    static let loaded: [XKeyVector] = {
        struct File: Decodable { var vectors: [XKeyVector] }
        let url = Bundle.module.url(forResource: "xkeys", withExtension: "json", subdirectory: "Vectors")!
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).vectors
    }()
}

@Suite struct SHA512_256Tests {
    // Digests from Python's hashlib ("sha512_256").
    @Test(arguments: [
        ("", "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"),
        ("abc", "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"),
        (String(repeating: "a", count: 111), "0239e429f98d0ed61ee8e2a7c30afe98c1c3a80ce5dff62a107e9c538f7632ce"),
        (String(repeating: "a", count: 112), "9216b5303edb66504570bee90e48ea5beaa5e9fe9f760bbd3e0460559fc005f6"),
        (String(repeating: "a", count: 239), "78d0a1b37aaad84c89fff13cbe3cd3d1025bcdb648268f9102b7e7032bea7d2a"),
    ])
    func matchesTheReference(_ input: String, _ hex: String) {
        let digest = SHA512_256.hash(Array(input.utf8))
        #expect(digest.map { String(format: "%02x", $0) }.joined() == hex)
    }

    @Test func multiBlockInput() {
        let input = (0..<5).flatMap { _ in (0..<256).map { UInt8($0) } }
        #expect(
            SHA512_256.hash(input).map { String(format: "%02x", $0) }.joined()
                == "29cf77853d4ed12414976cdb42377b05c197eef3bb25eb4bd86e79f4e17c96bd")
    }
}

@Suite struct JWTTests {
    let go = GoVectors.loaded

    @Test func decodesAndVerifiesTheGoDeployToken() throws {
        let claims = try NATSJWT.verify(go.deploy_jwt, now: 1_795_254_300)
        #expect(claims.issuer == go.issuer_public)
        #expect(claims.subject == "0b0c7b53-2f3e-4a34-9d1e-0f6c1f1d9a01")
        #expect(claims.issuedAt == 1_795_254_297)
        #expect(claims.nats["name"]?.stringValue == "echoservice")
        #expect(claims.nats["hash"]?.stringValue == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
        #expect(claims.nats["version"]?.intValue == 2)
        #expect(claims.id == NATSJWT.jti(for: claims))
    }

    @Test func encodesTheGoTokensByteForByte() throws {
        let issuer = try NKeyPair(seed: go.issuer_seed)
        let deploy = JWTClaims.generic(
            subject: "0b0c7b53-2f3e-4a34-9d1e-0f6c1f1d9a01", issuer: go.issuer_public, issuedAt: 1_795_254_297,
            fields: [
                "name": .string("echoservice"),
                "hash": .string("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            ])
        #expect(try NATSJWT.encode(deploy, signedBy: issuer) == go.deploy_jwt)
        let stop = JWTClaims.generic(subject: "cq9l2c2ot7jbmu2h9ru0", issuer: go.issuer_public, issuedAt: 1_795_254_297)
        #expect(try NATSJWT.encode(stop, signedBy: issuer) == go.stop_jwt)
    }

    @Test func tamperedOrForeignTokensAreRejected() throws {
        var parts = go.deploy_jwt.split(separator: ".").map(String.init)
        let otherIssuer = NKeyPair.generate(.account)
        let claims = JWTClaims.generic(subject: "x", issuer: otherIssuer.publicKey, fields: ["name": .string("evil")])
        let forged = try NATSJWT.encode(claims, signedBy: otherIssuer).split(separator: ".").map(String.init)
        parts[1] = forged[1]  // someone else's claims under the Go signature
        #expect(throws: NKeyError.self) { try NATSJWT.decode(parts.joined(separator: ".")) }
        #expect(throws: NKeyError.self) { try NATSJWT.decode("not.a.jwt") }
        #expect(throws: NKeyError.self) { try NATSJWT.decode("abc") }
        // Signing with a key that is not the issuer is refused.
        #expect(throws: NKeyError.self) { try NATSJWT.encode(claims, signedBy: NKeyPair.generate(.account)) }
    }

    @Test func expiryAndNotBeforeAreChecked() throws {
        let key = NKeyPair.generate(.account)
        var claims = JWTClaims(subject: "s", issuer: key.publicKey, issuedAt: 1000)
        claims.expires = 2000
        claims.notBefore = 1500
        let token = try NATSJWT.encode(claims, signedBy: key)
        #expect(throws: NKeyError.self) { try NATSJWT.verify(token, now: 1400) }
        #expect(try NATSJWT.verify(token, now: 1600).subject == "s")
        #expect(throws: NKeyError.self) { try NATSJWT.verify(token, now: 2000) }
    }

    @Test func stringsAreEscapedAsGoDoes() {
        let v = JSONValue.object([("a", .string("<x>&\"\\\n\u{1}\u{2028}é/"))])
        #expect(v.compactJSON == #"{"a":"\u003cx\u003e\u0026\"\\\n\u0001\u2028é/"}"#)
    }
}

@Suite struct XKeyTests {
    let go = GoVectors.loaded

    @Test func opensWhatGoSealed() throws {
        let recipient = try NKeyPair(seed: go.recipient_seed)
        #expect(recipient.publicKey == go.recipient_public)
        #expect(try NKeyPair(seed: go.sender_seed).publicKey == go.sender_public)
        let plain = try recipient.open(Array(Data(base64Encoded: go.sealed_b64)!), from: go.sender_public)
        #expect(String(decoding: plain, as: UTF8.self) == go.plaintext)
    }

    @Test(arguments: XKeyVector.loaded)
    func opensWhatPyNaClSealed(_ v: XKeyVector) throws {
        let recipient = try NKeyPair(seed: v.recipient_seed)
        #expect(recipient.publicKey == v.recipient_public)
        let plain = try recipient.open(Array(Data(base64Encoded: v.sealed_b64)!), from: v.sender_public)
        #expect(plain == Array(Data(base64Encoded: v.plaintext_b64)!))
    }

    @Test(arguments: XKeyVector.loaded)
    func pyNaClOpensWhatWeSeal(_ v: XKeyVector) async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "python venv missing")
        let python = try #require(TestEnvironment.python, "python venv missing: run scripts/setup.sh")
        let plain = Array(Data(base64Encoded: v.plaintext_b64)!)
        let sealed = try NKeyPair(seed: v.sender_seed).seal(plain, to: v.recipient_public)
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/xkey_open.py").path
        let out = try await TestEnvironment.run(
            python, [script, v.recipient_seed, v.sender_public, Data(sealed).base64EncodedString()])
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == v.plaintext_b64)
    }

    @Test func wrongKeysAndCorruptionAreErrors() throws {
        let a = NKeyPair.generate(.curve)
        let b = NKeyPair.generate(.curve)
        let sealed = try a.seal(Array("secret".utf8), to: b.publicKey)
        #expect(try b.open(sealed, from: a.publicKey) == Array("secret".utf8))
        #expect(throws: NKeyError.self) { try NKeyPair.generate(.curve).open(sealed, from: a.publicKey) }
        var corrupted = sealed
        corrupted[corrupted.count - 1] ^= 1
        #expect(throws: NKeyError.self) { try b.open(corrupted, from: a.publicKey) }
        #expect(throws: NKeyError.self) { try b.open(Array("xkv2".utf8) + sealed.dropFirst(4), from: a.publicKey) }
        #expect(throws: NKeyError.self) { try NKeyPair.generate(.user).seal([1], to: b.publicKey) }
        #expect(throws: NKeyError.self) { try a.seal([1], to: NKeyPair.generate(.user).publicKey) }
    }
}
