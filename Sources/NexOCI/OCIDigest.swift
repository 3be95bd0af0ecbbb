import Crypto

/// A content digest, `sha256:` and 64 lowercase hex digits: the only algorithm images here may use.
public struct OCIDigest: Sendable, Hashable, CustomStringConvertible {
    /// The 64 hex digits.
    public let hex: String

    public var description: String { "sha256:" + hex }

    public init(parsing text: String) throws(OCIError) {
        guard text.hasPrefix("sha256:") else {
            throw OCIError.badDigest(text, "only sha256 digests are taken")
        }
        let hex = text.dropFirst("sha256:".count)
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw OCIError.badDigest(text, "a sha256 digest is 64 lowercase hex digits")
        }
        self.hex = String(hex)
    }

    /// The digest of `bytes`.
    public init(of bytes: some Sequence<UInt8>) {
        var hasher = Hasher()
        hasher.update(bytes)
        self = hasher.finish()
    }

    private init(hex: String) { self.hex = hex }

    /// Digests content that arrives in pieces.
    public struct Hasher {
        private var sha = SHA256()
        /// Bytes seen so far.
        public private(set) var count = 0

        public init() {}

        public mutating func update(_ bytes: some Sequence<UInt8>) {
            let hashed = bytes.withContiguousStorageIfAvailable { buffer in
                sha.update(bufferPointer: UnsafeRawBufferPointer(buffer))
                return buffer.count
            }
            if let hashed {
                count += hashed
            } else {
                let array = Array(bytes)
                count += array.count
                sha.update(data: array)
            }
        }

        public func finish() -> OCIDigest {
            OCIDigest(
                hex: sha.finalize().map { byte in
                    let digits = Array("0123456789abcdef")
                    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
                }.joined())
        }
    }
}
