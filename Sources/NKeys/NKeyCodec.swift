/// Encoding and decoding of keys and seeds in their base32 + CRC16 text form.
public enum NKeyCodec {
    /// Encodes a 32-byte public key with its role prefix (e.g. `U…`).
    public static func encodePublic(_ prefix: NKeyPrefix, _ key: [UInt8]) -> String {
        encode([prefix.rawValue] + key)
    }

    /// Encodes a 32-byte raw seed as an `S…` seed of the given role.
    public static func encodeSeed(_ prefix: NKeyPrefix, _ rawSeed: [UInt8]) -> String {
        let b1 = NKeyPrefix.seed.rawValue | (prefix.rawValue >> 5)
        let b2 = (prefix.rawValue & 31) << 3
        return encode([b1, b2] + rawSeed)
    }

    /// Decodes a public key, checking its checksum and that its prefix is a public one.
    public static func decodePublic(_ text: some StringProtocol) throws(NKeyError) -> (NKeyPrefix, [UInt8]) {
        let raw = try decodeChecked(text)
        guard let prefix = NKeyPrefix(rawValue: raw[0]), NKeyPrefix.publicKeyPrefixes.contains(prefix) else {
            throw NKeyError(.invalidPrefix, "not a public key prefix")
        }
        guard raw.count == 33 else { throw NKeyError(.invalidPublicKey, "public key has the wrong length") }
        return (prefix, Array(raw[1...]))
    }

    /// Decodes a seed into its role and 32 raw bytes.
    public static func decodeSeed(_ text: some StringProtocol) throws(NKeyError) -> (NKeyPrefix, [UInt8]) {
        let raw = try decodeChecked(text)
        guard raw.count == 34 else { throw NKeyError(.invalidSeed, "seed has the wrong length") }
        let b1 = raw[0] & 0xF8
        let b2 = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
        guard b1 == NKeyPrefix.seed.rawValue else { throw NKeyError(.invalidSeed, "not a seed") }
        guard let prefix = NKeyPrefix(rawValue: b2), NKeyPrefix.publicKeyPrefixes.contains(prefix) else {
            throw NKeyError(.invalidPrefix, "seed has an invalid role prefix")
        }
        return (prefix, Array(raw[2...]))
    }

    /// True when `text` is a valid public key with the given role.
    public static func isValidPublicKey(_ text: some StringProtocol, _ prefix: NKeyPrefix) -> Bool {
        guard let (p, _) = try? decodePublic(text) else { return false }  // not a key at all
        return p == prefix
    }

    static func encode(_ raw: [UInt8]) -> String {
        let crc = CRC16.checksum(raw)
        return Base32.encode(raw + [UInt8(crc & 0xFF), UInt8(crc >> 8)])
    }

    static func decodeChecked(_ text: some StringProtocol) throws(NKeyError) -> [UInt8] {
        guard let raw = Base32.decode(text), raw.count >= 4 else {
            throw NKeyError(.invalidEncoding, "not valid base32")
        }
        let body = raw[..<(raw.count - 2)]
        let crc = UInt16(raw[raw.count - 2]) | (UInt16(raw[raw.count - 1]) << 8)
        guard CRC16.checksum(body) == crc else { throw NKeyError(.invalidChecksum, "checksum mismatch") }
        return Array(body)
    }
}
