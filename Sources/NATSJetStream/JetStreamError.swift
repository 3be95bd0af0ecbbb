/// An error from the JetStream API (`{"error":{"code":…,"err_code":…,"description":…}}`) or from the
/// client's handling of JetStream.
public struct JetStreamError: Error, Hashable, Sendable, CustomStringConvertible, Codable {
    /// The HTTP-like status code (404, 400, 503…).
    public var code: Int
    /// The JetStream error code (10059 stream not found, 10014 consumer not found, 10071 wrong last sequence…).
    public var errorCode: Int
    public var description: String

    public init(code: Int, errorCode: Int, description: String) {
        self.code = code
        self.errorCode = errorCode
        self.description = description
    }

    enum CodingKeys: String, CodingKey {
        case code
        case errorCode = "err_code"
        case description
    }

    /// Well-known `err_code` values.
    public enum Known {
        public static let streamNotFound = 10059
        public static let consumerNotFound = 10014
        public static let streamNameInUse = 10058
        public static let wrongLastSequence = 10071
        public static let messageNotFound = 10037
        public static let noMessageFound = 10037
        public static let streamWrongLastMsgID = 10070
    }

    /// Made by the client, not the server (`code` 0).
    static func client(_ description: String, code: Int = 0) -> JetStreamError {
        JetStreamError(code: code, errorCode: 0, description: description)
    }
}
