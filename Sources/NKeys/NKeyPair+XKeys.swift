import CSodium

/// XKeys: sealing with curve (X25519) key pairs in the `xkv1` format of the NATS nkeys libraries:
/// `"xkv1" ‖ 24-byte random nonce ‖ NaCl box (X25519 + XSalsa20-Poly1305)`.
extension NKeyPair {
    /// The version tag every sealed message starts with.
    public static let xkeyVersion: [UInt8] = Array("xkv1".utf8)

    /// Seals `plaintext` for `recipient` (an `X…` public key) with this curve key pair's seed.
    public func seal(_ plaintext: [UInt8], to recipient: String) throws(NKeyError) -> [UInt8] {
        let (secret, peer) = try boxKeys(recipient)
        Sodium.ready()
        var nonce = [UInt8](repeating: 0, count: Int(crypto_box_NONCEBYTES))
        randombytes_buf(&nonce, nonce.count)
        var box = [UInt8](repeating: 0, count: plaintext.count + Int(crypto_box_MACBYTES))
        let rc = crypto_box_easy(&box, plaintext, UInt64(plaintext.count), nonce, peer, secret)
        guard rc == 0 else { throw NKeyError(.invalidPublicKey, "cannot seal to \(recipient)") }
        return Self.xkeyVersion + nonce + box
    }

    /// Opens a message sealed for this key pair by `sender` (an `X…` public key).
    public func open(_ sealed: [UInt8], from sender: String) throws(NKeyError) -> [UInt8] {
        let (secret, peer) = try boxKeys(sender)
        let header = Self.xkeyVersion.count + Int(crypto_box_NONCEBYTES)
        guard sealed.count >= header + Int(crypto_box_MACBYTES), sealed.starts(with: Self.xkeyVersion) else {
            throw NKeyError(.invalidEncoding, "not an xkv1 sealed message")
        }
        Sodium.ready()
        let nonce = Array(sealed[Self.xkeyVersion.count..<header])
        let box = Array(sealed[header...])
        var plain = [UInt8](repeating: 0, count: box.count - Int(crypto_box_MACBYTES))
        let rc = crypto_box_open_easy(&plain, box, UInt64(box.count), nonce, peer, secret)
        guard rc == 0 else {
            throw NKeyError(.invalidSignature, "cannot open: sealed for another key, by another sender, or corrupted")
        }
        return plain
    }

    private func boxKeys(_ peer: String) throws(NKeyError) -> (secret: [UInt8], peer: [UInt8]) {
        guard prefix == .curve else { throw NKeyError(.invalidPrefix, "only curve (X) keys can seal and open") }
        guard let secret = rawSeedBytes else { throw NKeyError(.publicKeyOnly, "sealing needs the curve seed") }
        let (peerPrefix, peerKey) = try NKeyCodec.decodePublic(peer)
        guard peerPrefix == .curve else { throw NKeyError(.invalidPrefix, "\(peer.prefix(1))… is not a curve key") }
        return (secret, peerKey)
    }
}

/// libsodium must be initialised once before use.
enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0

    static func ready() {
        precondition(initialised, "libsodium failed to initialise")
    }
}
