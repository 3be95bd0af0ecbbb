import Foundation
import NKeys
import Testing

struct Vector: Decodable, Sendable, CustomTestStringConvertible {
    var kind: String
    var raw_seed_hex: String
    var seed: String
    var public_key: String
    var private_key: String?
    var message: String?
    var signature_b64url: String?
    var testDescription: String { "\(kind) \(public_key.prefix(8))" }
}

let vectors: [Vector] = {
    struct File: Decodable { var vectors: [Vector] }
    let url = Bundle.module.url(forResource: "nkeys", withExtension: "json", subdirectory: "Vectors")!
    return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).vectors
}()

func hexBytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = hex.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

@Suite struct NKeysVectorTests {
    @Test(arguments: vectors)
    func seedDecodesToTheSameKeys(_ v: Vector) throws {
        let kp = try NKeyPair(seed: v.seed)
        #expect(kp.publicKey == v.public_key)
        #expect(kp.rawSeedBytes == hexBytes(v.raw_seed_hex))
        #expect(kp.seed == v.seed)
        #expect(kp.privateKey == v.private_key)
    }

    @Test(arguments: vectors)
    func rawSeedEncodesToTheSameSeed(_ v: Vector) throws {
        let kp = try NKeyPair(seed: v.seed)
        let again = try NKeyPair(prefix: kp.prefix, rawSeed: hexBytes(v.raw_seed_hex))
        #expect(again.seed == v.seed)
        #expect(again.publicKey == v.public_key)
    }

    @Test(arguments: vectors.filter { $0.signature_b64url != nil })
    func signaturesMatchThePeer(_ v: Vector) throws {
        let kp = try NKeyPair(seed: v.seed)
        let message = Array(v.message!.utf8)
        let sig = try kp.sign(message)
        #expect(Base64URL.encode(sig) == v.signature_b64url)
        let verifier = try NKeyPair(publicKey: v.public_key)
        #expect(verifier.verify(sig, for: message))
        #expect(!verifier.verify(sig, for: Array("tampered".utf8)))
    }

    @Test func everyRoleRoundTrips() throws {
        for prefix in NKeyPrefix.publicKeyPrefixes {
            let kp = NKeyPair.generate(prefix)
            let first = kp.publicKey.first.map(String.init)
            let expected: [NKeyPrefix: String] = [
                .user: "U", .account: "A", .operator: "O", .server: "N", .cluster: "C", .curve: "X",
            ]
            #expect(first == expected[prefix])
            #expect(try NKeyPair(seed: kp.seed!).publicKey == kp.publicKey)
            #expect(NKeyCodec.isValidPublicKey(kp.publicKey, prefix))
        }
    }
}

@Suite struct NKeysErrorTests {
    @Test func corruptedChecksumIsRejected() throws {
        var chars = Array(vectors[0].public_key)
        chars[10] = chars[10] == "A" ? "B" : "A"
        #expect(throws: NKeyError.self) { try NKeyPair(publicKey: String(chars)) }
    }

    @Test func garbageIsRejected() {
        #expect(throws: NKeyError.self) { try NKeyPair(seed: "not a seed!") }
        #expect(throws: NKeyError.self) { try NKeyPair(seed: vectors[0].public_key) }
        #expect(throws: NKeyError.self) { try NKeyPair(publicKey: vectors[0].seed) }
    }

    @Test func publicOnlyCannotSign() throws {
        let kp = try NKeyPair(publicKey: vectors[0].public_key)
        #expect(kp.seed == nil)
        #expect(throws: NKeyError(.publicKeyOnly, "cannot sign with a public key")) { try kp.sign([1, 2, 3]) }
    }

    @Test func curveKeysCannotSign() {
        let kp = NKeyPair.generate(.curve)
        #expect(throws: NKeyError.self) { try kp.sign([1]) }
    }
}

@Suite struct CredentialsFileTests {
    @Test func roundTripsTheDecoratedFormat() throws {
        let seed = NKeyPair.generate(.user).seed!
        let creds = CredentialsFile(jwt: "eyJhbGciOi.eyJqdGkiOi.c2ln", seed: seed)
        let parsed = try CredentialsFile(parsing: creds.formatted)
        #expect(parsed == creds)
    }

    @Test func missingSeedIsAnError() {
        let text = "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n"
        #expect(throws: NKeyError.self) { try CredentialsFile(parsing: text) }
    }
}

@Suite struct Base64URLTests {
    @Test func roundTripsAllLengths() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("="))
            #expect(Base64URL.decode(text) == bytes)
        }
        #expect(Base64URL.decode("a*b") == nil)
    }
}
