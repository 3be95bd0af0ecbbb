public import NATSProtocol
public import NIOCore

/// A message received on a subscription or as a reply.
public struct NATSMessage: Sendable {
    /// The subject it was published to.
    public var subject: String
    /// Where to send a reply, if the publisher asked for one.
    public var replyTo: String?
    /// Headers, including the status line of server-made messages.
    public var headers: NATSHeaders?
    /// The payload.
    public var payload: ByteBuffer

    public init(subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: ByteBuffer) {
        self.subject = subject
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }

    /// The payload as bytes.
    public var bytes: [UInt8] { Array(payload.readableBytesView) }

    /// The payload decoded as UTF-8.
    public var string: String { String(buffer: payload) }

    /// The status code of the status line, if any (503 no responders, 408, 409, 100…).
    public var status: Int? { headers?.status }
}
