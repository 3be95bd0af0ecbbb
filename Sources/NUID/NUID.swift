import Synchronization

/// A generator of NATS unique identifiers: 22 base62 characters, a 12-character random prefix
/// followed by a 10-character sequence that advances by a random increment.
///
/// The value type is not thread-safe on its own; ``NUID/next()`` uses a shared, locked generator.
public struct NUID: Sendable {
    static let digits = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)
    static let base: UInt64 = 62
    /// Length of the random prefix.
    public static let prefixLength = 12
    /// Length of the sequential part.
    public static let sequenceLength = 10
    /// Total length of an identifier.
    public static let length = prefixLength + sequenceLength
    static let maxSequence: UInt64 = 839_299_365_868_340_224  // 62^10
    static let minIncrement: UInt64 = 33
    static let maxIncrement: UInt64 = 333

    private var prefix: [UInt8]
    private var sequence: UInt64
    private var increment: UInt64

    /// Creates a generator with a fresh random prefix and sequence.
    public init() {
        var rng = SystemRandomNumberGenerator()
        prefix = []
        sequence = UInt64.random(in: 0..<Self.maxSequence, using: &rng)
        increment = UInt64.random(in: Self.minIncrement..<Self.maxIncrement, using: &rng)
        randomizePrefix(using: &rng)
    }

    private mutating func randomizePrefix(using rng: inout SystemRandomNumberGenerator) {
        prefix = (0..<Self.prefixLength).map { _ in Self.digits[Int.random(in: 0..<62, using: &rng)] }
    }

    /// Returns the next identifier.
    public mutating func next() -> String {
        sequence += increment
        if sequence >= Self.maxSequence {
            var rng = SystemRandomNumberGenerator()
            randomizePrefix(using: &rng)
            sequence = UInt64.random(in: 0..<Self.maxSequence, using: &rng)
            increment = UInt64.random(in: Self.minIncrement..<Self.maxIncrement, using: &rng)
        }
        return String(unsafeUninitializedCapacity: Self.length) { out in
            for i in 0..<Self.prefixLength { out[i] = prefix[i] }
            var s = sequence
            for i in stride(from: Self.length - 1, through: Self.prefixLength, by: -1) {
                out[i] = Self.digits[Int(s % Self.base)]
                s /= Self.base
            }
            return Self.length
        }
    }

    private static let shared = Mutex(NUID())

    /// Returns the next identifier from a process-wide generator (thread-safe).
    public static func next() -> String {
        shared.withLock { $0.next() }
    }
}
