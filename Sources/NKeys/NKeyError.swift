/// Why a key could not be decoded, used or verified.
public struct NKeyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: Hashable, Sendable {
        case invalidEncoding
        case invalidChecksum
        case invalidPrefix
        case invalidSeed
        case invalidPublicKey
        case publicKeyOnly
        case invalidSignature
        case invalidCredentials
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "nkeys: \(message)" }
}
