/// Where a new consumer starts.
public enum DeliverPolicy: String, Codable, Sendable {
    case all
    case last
    case new
    case byStartSequence = "by_start_sequence"
    case byStartTime = "by_start_time"
    case lastPerSubject = "last_per_subject"
}

/// How messages must be acknowledged.
public enum AckPolicy: String, Codable, Sendable {
    case explicit, none, all
}

/// How fast messages are replayed.
public enum ReplayPolicy: String, Codable, Sendable {
    case instant, original
}

/// A consumer's configuration (JetStream `ConsumerConfig`). Durations are nanoseconds on the wire.
public struct ConsumerConfig: Codable, Sendable, Equatable {
    /// Durable name; nil for an ephemeral consumer.
    public var durableName: String?
    public var name: String?
    public var description: String?
    public var deliverPolicy: DeliverPolicy = .all
    public var startSequence: UInt64?
    public var startTime: NATSTimestamp?
    public var ackPolicy: AckPolicy = .explicit
    /// How long the server waits for an ack before redelivering.
    @Nanoseconds public var ackWait: Duration?
    public var maxDeliver: Int?
    public var filterSubject: String?
    public var filterSubjects: [String]?
    public var replayPolicy: ReplayPolicy = .instant
    public var maxAckPending: Int?
    public var maxWaiting: Int?
    public var headersOnly: Bool?
    /// An ephemeral (or durable) consumer is removed after this long without activity.
    @Nanoseconds public var inactiveThreshold: Duration?
    public var replicas: Int?
    public var memoryStorage: Bool?
    public var metadata: [String: String]?

    public init(durableName: String? = nil, filterSubject: String? = nil, ackPolicy: AckPolicy = .explicit) {
        self.durableName = durableName
        self.filterSubject = filterSubject
        self.ackPolicy = ackPolicy
    }

    enum CodingKeys: String, CodingKey {
        case name, description, metadata
        case durableName = "durable_name"
        case deliverPolicy = "deliver_policy"
        case startSequence = "opt_start_seq"
        case startTime = "opt_start_time"
        case ackPolicy = "ack_policy"
        case ackWait = "ack_wait"
        case maxDeliver = "max_deliver"
        case filterSubject = "filter_subject"
        case filterSubjects = "filter_subjects"
        case replayPolicy = "replay_policy"
        case maxAckPending = "max_ack_pending"
        case maxWaiting = "max_waiting"
        case headersOnly = "headers_only"
        case inactiveThreshold = "inactive_threshold"
        case replicas = "num_replicas"
        case memoryStorage = "mem_storage"
    }
}

/// A consumer's configuration and state (`CONSUMER.INFO`).
public struct ConsumerInfo: Codable, Sendable {
    public var stream: String
    public var name: String
    public var created: NATSTimestamp
    public var config: ConsumerConfig
    public var delivered: SequencePair
    public var ackFloor: SequencePair
    public var pendingAcks: Int
    public var redelivered: Int
    public var waiting: Int
    /// Messages in the stream the consumer has not delivered yet.
    public var pending: UInt64
    public var cluster: ClusterInfo?

    enum CodingKeys: String, CodingKey {
        case name, created, config, delivered, cluster
        case redelivered = "num_redelivered"
        case stream = "stream_name"
        case ackFloor = "ack_floor"
        case pendingAcks = "num_ack_pending"
        case waiting = "num_waiting"
        case pending = "num_pending"
    }
}

/// A consumer sequence and the stream sequence it corresponds to.
public struct SequencePair: Codable, Sendable, Equatable {
    public var consumerSequence: UInt64
    public var streamSequence: UInt64

    enum CodingKeys: String, CodingKey {
        case consumerSequence = "consumer_seq"
        case streamSequence = "stream_seq"
    }
}
