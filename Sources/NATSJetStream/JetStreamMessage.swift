public import NATS
import NIOCore

/// A message delivered by a JetStream consumer, with its metadata and acknowledgement.
public struct JetStreamMessage: Sendable {
    /// The message as delivered (subject, headers, payload, reply = ack subject).
    public let message: NATSMessage
    /// Parsed from the ack subject.
    public let metadata: Metadata
    let client: NATSClient

    /// Position and delivery facts of a JetStream message, from its `$JS.ACK…` reply subject.
    public struct Metadata: Sendable, Equatable {
        public var domain: String?
        public var stream: String
        public var consumer: String
        /// How many times this message was delivered (1 on first delivery).
        public var delivered: UInt64
        public var streamSequence: UInt64
        public var consumerSequence: UInt64
        /// When the message was stored, in nanoseconds since 1970.
        public var timestamp: NATSTimestamp
        /// Messages left for the consumer after this one.
        public var pending: UInt64

        /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>` and the newer form
        /// `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>.<token>`.
        public init?(ackSubject: String) {
            let t = ackSubject.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard t.count >= 9, t[0] == "$JS", t[1] == "ACK" else { return nil }
            let base: Int
            if t.count == 9 {
                base = 2
                domain = nil
            } else if t.count >= 11 {
                base = 4
                domain = t[2] == "_" ? nil : t[2]
            } else {
                return nil
            }
            guard let d = UInt64(t[base + 2]), let s = UInt64(t[base + 3]), let c = UInt64(t[base + 4]),
                let ns = Int64(t[base + 5]), let p = UInt64(t[base + 6])
            else { return nil }
            stream = t[base]
            consumer = t[base + 1]
            delivered = d
            streamSequence = s
            consumerSequence = c
            timestamp = NATSTimestamp(seconds: ns / 1_000_000_000, nanoseconds: Int32(ns % 1_000_000_000))
            pending = p
        }
    }

    init?(_ message: NATSMessage, client: NATSClient) {
        guard let reply = message.replyTo, let metadata = Metadata(ackSubject: reply) else { return nil }
        self.message = message
        self.metadata = metadata
        self.client = client
    }

    public var subject: String { message.subject }
    public var headers: NATSHeaders? { message.headers }
    public var payload: ByteBuffer { message.payload }
    public var string: String { message.string }
    public var bytes: [UInt8] { message.bytes }

    /// Acknowledges: processed, don't redeliver.
    public func ack() async throws { try await send("+ACK") }

    /// Acknowledges and waits for the server to confirm it recorded the ack.
    public func ackSync(timeout: Duration = .seconds(5)) async throws {
        guard let reply = message.replyTo else { throw JetStreamError.client("message has no ack subject") }
        _ = try await client.request("+ACK", to: reply, timeout: timeout)
    }

    /// Negative acknowledgement: redeliver, after `delay` when given.
    public func nak(delay: Duration? = nil) async throws {
        if let delay { try await send("-NAK {\"delay\":\(Nanos.encode(delay))}") } else { try await send("-NAK") }
    }

    /// Stop redelivering this message; it is not processed. A `reason` goes into the server's
    /// `MSG_TERMINATED` advisory.
    public func term(reason: String? = nil) async throws {
        if let reason, !reason.isEmpty {
            // One line: the server takes everything after `+TERM ` as the reason.
            try await send("+TERM " + reason.split(whereSeparator: \.isNewline).joined(separator: " "))
        } else {
            try await send("+TERM")
        }
    }

    /// Still working on it: resets the ack wait timer.
    public func inProgress() async throws { try await send("+WPI") }

    private func send(_ body: String) async throws {
        guard let reply = message.replyTo else { throw JetStreamError.client("message has no ack subject") }
        try await client.publish(body, to: reply)
    }
}
