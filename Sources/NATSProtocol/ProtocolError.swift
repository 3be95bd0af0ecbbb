/// A violation of the NATS wire protocol seen while parsing or encoding.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of violation.
    public enum Code: Hashable, Sendable {
        /// A control line longer than the configured maximum without a line end.
        case controlLineTooLong
        /// An operation this client does not know.
        case unknownOperation
        /// An operation with missing or malformed arguments.
        case malformedOperation
        /// A payload or header block that does not end where its length says.
        case malformedPayload
        /// A header block that is not `NATS/1.0` followed by `name: value` lines.
        case malformedHeaders
        /// A payload larger than the allowed maximum.
        case payloadTooLarge
        /// An INFO whose JSON does not decode.
        case malformedInfo
    }

    public var code: Code
    public var detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { "NATS protocol error (\(code)): \(detail)" }
}
