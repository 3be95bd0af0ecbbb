/// JetStream's consumer advisories about single messages. The server publishes them on `$JS.EVENT.ADVISORY.…`
/// only while someone subscribes, and keeps none: subscribe before they can happen.
public enum ConsumerAdvisory {
    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` (wildcards allowed): a message was
    /// delivered `max_deliver` times without an ack and is given up.
    public static func maxDeliveriesSubject(stream: String = "*", consumer: String = "*") -> String {
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.\(stream).\(consumer)"
    }

    /// `$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.<stream>.<consumer>`: a message was terminated (`+TERM`).
    public static func terminatedSubject(stream: String = "*", consumer: String = "*") -> String {
        "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.\(stream).\(consumer)"
    }

    /// A message given up after `max_deliver` deliveries (`io.nats.jetstream.advisory.v1.max_deliver`). The
    /// server sends it when the last delivery's ack wait ran out, or when a message nak'd after its last
    /// delivery would be delivered again.
    public struct MaxDeliveries: Codable, Sendable, Equatable {
        public static let type = "io.nats.jetstream.advisory.v1.max_deliver"
        public var type: String
        /// Unique per advisory.
        public var id: String
        public var stream: String
        public var consumer: String
        public var streamSequence: UInt64
        public var deliveries: UInt64
        public var domain: String?

        enum CodingKeys: String, CodingKey {
            case type, id, stream, consumer, deliveries, domain
            case streamSequence = "stream_seq"
        }
    }

    /// A terminated message (`io.nats.jetstream.advisory.v1.terminated`), with the reason given to `+TERM`.
    public struct Terminated: Codable, Sendable, Equatable {
        public static let type = "io.nats.jetstream.advisory.v1.terminated"
        public var type: String
        public var id: String
        public var stream: String
        public var consumer: String
        public var consumerSequence: UInt64
        public var streamSequence: UInt64
        public var deliveries: UInt64
        public var reason: String?
        public var domain: String?

        enum CodingKeys: String, CodingKey {
            case type, id, stream, consumer, deliveries, reason, domain
            case consumerSequence = "consumer_seq"
            case streamSequence = "stream_seq"
        }
    }
}
