/// How a stream keeps messages.
public enum RetentionPolicy: String, Codable, Sendable {
    case limits, interest, workqueue
}

/// Where a stream stores messages.
public enum StorageType: String, Codable, Sendable {
    case file, memory
}

/// What a full stream does with new messages.
public enum DiscardPolicy: String, Codable, Sendable {
    case old, new
}

/// A stream's configuration (JetStream `StreamConfig`). Durations are nanoseconds on the wire.
public struct StreamConfig: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    public var subjects: [String]?
    public var retention: RetentionPolicy = .limits
    public var maxConsumers: Int = -1
    public var maxMessages: Int64 = -1
    public var maxBytes: Int64 = -1
    /// Oldest message age kept; nil or zero keeps messages forever.
    @Nanoseconds public var maxAge: Duration?
    public var maxMessagesPerSubject: Int64 = -1
    public var maxMessageSize: Int32 = -1
    public var storage: StorageType = .file
    public var replicas: Int = 1
    public var noAck: Bool?
    public var discard: DiscardPolicy = .old
    /// Window in which `Nats-Msg-Id` duplicates are detected.
    @Nanoseconds public var duplicateWindow: Duration?
    public var allowRollup: Bool?
    public var denyDelete: Bool?
    public var denyPurge: Bool?
    /// Allow direct get (`$JS.API.DIRECT.GET`).
    public var allowDirect: Bool?
    public var mirrorDirect: Bool?
    public var sealed: Bool?
    public var metadata: [String: String]?
    /// Allow message schedules (ADR-51): a message with `Nats-Schedule` headers makes the server publish to its
    /// target in this stream on every tick. The server turns on roll-ups with it, and it cannot be turned off.
    public var allowMessageSchedules: Bool?
    /// Allow a per-message TTL (`Nats-TTL`, see ``PublishOptions/ttl``). It cannot be turned off.
    public var allowMessageTTL: Bool?
    /// How long the marker the server leaves when a subject's last message ages out or is removed lives (at
    /// least 1 s); setting it allows per-message TTLs.
    @Nanoseconds public var subjectDeleteMarkerTTL: Duration?

    public init(name: String, subjects: [String]? = nil) {
        self.name = name
        self.subjects = subjects
    }

    enum CodingKeys: String, CodingKey {
        case name, description, subjects, retention, storage, discard, sealed, metadata
        case maxConsumers = "max_consumers"
        case maxMessages = "max_msgs"
        case maxBytes = "max_bytes"
        case maxAge = "max_age"
        case maxMessagesPerSubject = "max_msgs_per_subject"
        case maxMessageSize = "max_msg_size"
        case replicas = "num_replicas"
        case noAck = "no_ack"
        case duplicateWindow = "duplicate_window"
        case allowRollup = "allow_rollup_hdrs"
        case denyDelete = "deny_delete"
        case denyPurge = "deny_purge"
        case allowDirect = "allow_direct"
        case mirrorDirect = "mirror_direct"
        case allowMessageSchedules = "allow_msg_schedules"
        case allowMessageTTL = "allow_msg_ttl"
        case subjectDeleteMarkerTTL = "subject_delete_marker_ttl"
    }
}

/// A stream's configuration and state (`STREAM.INFO`).
public struct StreamInfo: Codable, Sendable {
    public var config: StreamConfig
    public var created: NATSTimestamp
    public var state: StreamState
    public var cluster: ClusterInfo?
}

/// Counters of a stream.
public struct StreamState: Codable, Sendable, Equatable {
    public var messages: UInt64
    public var bytes: UInt64
    public var firstSequence: UInt64
    public var firstTime: NATSTimestamp?
    public var lastSequence: UInt64
    public var lastTime: NATSTimestamp?
    public var consumerCount: Int
    public var subjectCount: Int?
    public var deletedCount: Int?

    enum CodingKeys: String, CodingKey {
        case messages, bytes
        case firstSequence = "first_seq"
        case firstTime = "first_ts"
        case lastSequence = "last_seq"
        case lastTime = "last_ts"
        case consumerCount = "consumer_count"
        case subjectCount = "num_subjects"
        case deletedCount = "num_deleted"
    }
}

/// Where a clustered stream or consumer runs.
public struct ClusterInfo: Codable, Sendable, Equatable {
    public var name: String?
    public var leader: String?
}
