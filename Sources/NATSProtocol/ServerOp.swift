public import NIOCore

/// One operation sent by a NATS server.
public enum ServerOp: Sendable {
    /// `INFO {…}`: server information, first on connect and again when the cluster changes.
    case info(ServerInfo)
    /// `MSG` or `HMSG`: a message for one of our subscriptions.
    case message(NATSMessage)
    /// `PING`: the server checks we are alive; answer with PONG.
    case ping
    /// `PONG`: the answer to one of our PINGs, in order.
    case pong
    /// `+OK`: acknowledgement in verbose mode.
    case ok
    /// `-ERR '…'`: an error, with the quotes removed.
    case error(String)
}

/// A message received on a subscription or as a reply, exactly as the parser produced it (no copies on the
/// way to the subscriber).
public struct NATSMessage: Sendable {
    /// The subject it was published to.
    public var subject: String
    /// The subscription id it was delivered for (0 for messages made by hand).
    public var sid: UInt64
    /// Where to send a reply, if the publisher asked for one.
    public var replyTo: String?
    /// Headers, including the status line of server-made messages.
    public var headers: NATSHeaders?
    /// The payload (a slice of the read buffer, not a copy).
    public var payload: ByteBuffer

    public init(
        subject: String, sid: UInt64 = 0, replyTo: String? = nil, headers: NATSHeaders? = nil, payload: ByteBuffer
    ) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.payload = payload
    }
}
