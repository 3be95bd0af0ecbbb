/// An error from the NATS client, with a code to switch on and context for people.
public struct NATSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of error. Extensible: new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        public static let invalidSubject = Code(name: "invalidSubject")
        public static let invalidQueue = Code(name: "invalidQueue")
        public static let invalidHeaders = Code(name: "invalidHeaders")
        public static let invalidURL = Code(name: "invalidURL")
        public static let invalidCredentials = Code(name: "invalidCredentials")
        public static let invalidConfiguration = Code(name: "invalidConfiguration")
        /// The payload is larger than the server's `max_payload`.
        public static let payloadTooLarge = Code(name: "payloadTooLarge")
        /// The server does not support headers, but the message has some.
        public static let headersNotSupported = Code(name: "headersNotSupported")
        /// A request found nobody subscribed to its subject (status 503).
        public static let noResponders = Code(name: "noResponders")
        /// An operation did not finish in time.
        public static let timeout = Code(name: "timeout")
        /// The connection is closed; nothing more can be sent.
        public static let connectionClosed = Code(name: "connectionClosed")
        /// The connection dropped while the operation was waiting.
        public static let disconnected = Code(name: "disconnected")
        /// The connection is draining and accepts no new work.
        public static let draining = Code(name: "draining")
        /// Too much was published while disconnected.
        public static let reconnectBufferExceeded = Code(name: "reconnectBufferExceeded")
        /// No server could be reached (initial connect or after reconnect attempts ran out).
        public static let noServers = Code(name: "noServers")
        public static let authorizationViolation = Code(name: "authorizationViolation")
        public static let authenticationExpired = Code(name: "authenticationExpired")
        public static let authenticationRevoked = Code(name: "authenticationRevoked")
        public static let permissionViolation = Code(name: "permissionViolation")
        /// The server did not answer PINGs.
        public static let staleConnection = Code(name: "staleConnection")
        /// The server sent bytes that are not the NATS protocol.
        public static let protocolError = Code(name: "protocolError")
        /// Any other `-ERR` from the server.
        public static let serverError = Code(name: "serverError")
        public static let tlsFailure = Code(name: "tlsFailure")
        /// The subscription buffer was full and messages were dropped.
        public static let slowConsumer = Code(name: "slowConsumer")
        /// A subscription handler threw; the subscription goes on.
        public static let handlerFailed = Code(name: "handlerFailed")
        /// The operation was cancelled.
        public static let cancelled = Code(name: "cancelled")
        /// A second consumer waited on a subscription that another one is waiting on (a subscription has one
        /// consumer at a time: iterate it from one task).
        public static let alreadyConsumed = Code(name: "alreadyConsumed")
    }

    public var code: Code
    public var message: String
    /// The subject involved, when there is one.
    public var subject: String?

    public init(_ code: Code, _ message: String, subject: String? = nil) {
        self.code = code
        self.message = message
        self.subject = subject
    }

    public var description: String {
        if let subject { return "NATS \(code) on \"\(subject)\": \(message)" }
        return "NATS \(code): \(message)"
    }

    /// Maps a server `-ERR` text to a typed error.
    static func fromServer(_ text: String) -> NATSError {
        let lower = text.lowercased()
        if lower.hasPrefix("permissions violation") {
            return NATSError(.permissionViolation, text, subject: quotedSubject(in: text))
        }
        if lower.hasPrefix("authorization violation") || lower.contains("authentication timeout") {
            return NATSError(.authorizationViolation, text)
        }
        if lower.contains("expired") { return NATSError(.authenticationExpired, text) }
        if lower.contains("revoked") { return NATSError(.authenticationRevoked, text) }
        if lower.hasPrefix("maximum payload") { return NATSError(.payloadTooLarge, text) }
        if lower.hasPrefix("stale connection") { return NATSError(.staleConnection, text) }
        return NATSError(.serverError, text)
    }

    private static func quotedSubject(in text: String) -> String? {
        guard let open = text.firstIndex(of: "\""), let close = text.lastIndex(of: "\""), open < close else {
            return nil
        }
        return String(text[text.index(after: open)..<close])
    }
}
