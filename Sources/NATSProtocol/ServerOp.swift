public import NIOCore

/// One operation sent by a NATS server.
public enum ServerOp: Sendable {
    /// `INFO {…}`: server information, first on connect and again when the cluster changes.
    case info(ServerInfo)
    /// `MSG` or `HMSG`: a message for one of our subscriptions.
    case message(MessageFrame)
    /// `PING`: the server checks we are alive; answer with PONG.
    case ping
    /// `PONG`: the answer to one of our PINGs, in order.
    case pong
    /// `+OK`: acknowledgement in verbose mode.
    case ok
    /// `-ERR '…'`: an error, with the quotes removed.
    case error(String)
}

/// A message as it arrives on the wire, before it is handed to a subscription.
public struct MessageFrame: Sendable {
    /// The subject the message was published to.
    public var subject: String
    /// The subscription id it was delivered for.
    public var sid: UInt64
    /// The reply subject, if the publisher gave one.
    public var replyTo: String?
    /// Headers (from HMSG), including the status line.
    public var headers: NATSHeaders?
    /// The payload bytes (a slice of the read buffer, not a copy).
    public var payload: ByteBuffer

    public init(subject: String, sid: UInt64, replyTo: String?, headers: NATSHeaders?, payload: ByteBuffer) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }
}
