import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A NATS key pair: an Ed25519 signing key (users, accounts, operators, servers, clusters) or, for the
/// `curve` role, an X25519 key (xkeys). Made from a seed, or public-only for verification.
public struct NKeyPair: Sendable {
    /// The role of this key.
    public let prefix: NKeyPrefix
    /// The public key in text form (`U…`, `A…`, `N…`, `X…`, …).
    public let publicKey: String
    private let rawSeed: [UInt8]?
    private let rawPublic: [UInt8]

    /// Creates a key pair from an encoded seed (`SU…`, `SA…`, `SX…`, …).
    public init(seed: some StringProtocol) throws(NKeyError) {
        let (prefix, raw) = try NKeyCodec.decodeSeed(seed)
        try self.init(prefix: prefix, rawSeed: raw)
    }

    /// Creates a key pair from a role and 32 raw seed bytes.
    public init(prefix: NKeyPrefix, rawSeed: [UInt8]) throws(NKeyError) {
        guard rawSeed.count == 32 else { throw NKeyError(.invalidSeed, "raw seed must be 32 bytes") }
        guard NKeyPrefix.publicKeyPrefixes.contains(prefix) else {
            throw NKeyError(.invalidPrefix, "\(prefix) is not a key role")
        }
        let pub: [UInt8]
        do {
            if prefix == .curve {
                pub = Array(
                    try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: rawSeed).publicKey.rawRepresentation)
            } else {
                pub = Array(try Curve25519.Signing.PrivateKey(rawRepresentation: rawSeed).publicKey.rawRepresentation)
            }
        } catch {
            throw NKeyError(.invalidSeed, "seed is not a valid key")
        }
        self.prefix = prefix
        self.rawSeed = rawSeed
        self.rawPublic = pub
        self.publicKey = NKeyCodec.encodePublic(prefix, pub)
    }

    /// Creates a verification-only key pair from a public key.
    public init(publicKey: some StringProtocol) throws(NKeyError) {
        let (prefix, raw) = try NKeyCodec.decodePublic(publicKey)
        self.prefix = prefix
        self.rawSeed = nil
        self.rawPublic = raw
        self.publicKey = String(publicKey)
    }

    /// Generates a new random key pair with the given role.
    public static func generate(_ prefix: NKeyPrefix) -> NKeyPair {
        var rng = SystemRandomNumberGenerator()
        let raw = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        // A 32-byte seed with a public role cannot fail.
        return try! NKeyPair(prefix: prefix, rawSeed: raw)
    }

    /// The encoded seed, or nil for a public-only key pair. Treat it as a secret: never log it.
    public var seed: String? {
        rawSeed.map { NKeyCodec.encodeSeed(prefix, $0) }
    }

    /// The encoded private key (`P…`: the 64-byte Ed25519 key, seed then public key), or nil for a
    /// public-only or curve key pair. A secret: never log it.
    public var privateKey: String? {
        guard let rawSeed, prefix != .curve else { return nil }
        return NKeyCodec.encode([NKeyPrefix.private.rawValue] + rawSeed + rawPublic)
    }

    /// The 32 raw public key bytes.
    public var publicKeyBytes: [UInt8] { rawPublic }

    /// The 32 raw seed bytes, or nil for a public-only key pair.
    public var rawSeedBytes: [UInt8]? { rawSeed }

    /// Signs `data` with Ed25519 (64-byte signature).
    public func sign(_ data: [UInt8]) throws(NKeyError) -> [UInt8] {
        guard let rawSeed else { throw NKeyError(.publicKeyOnly, "cannot sign with a public key") }
        guard prefix != .curve else { throw NKeyError(.invalidPrefix, "curve keys cannot sign") }
        do {
            let key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawSeed)
            return Array(try key.signature(for: data))
        } catch {
            throw NKeyError(.invalidSeed, "signing failed")
        }
    }

    /// Verifies an Ed25519 signature made by this key.
    public func verify(_ signature: [UInt8], for data: [UInt8]) -> Bool {
        guard prefix != .curve,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: rawPublic)  // malformed: verifies nothing
        else { return false }
        return key.isValidSignature(signature, for: data)
    }
}
