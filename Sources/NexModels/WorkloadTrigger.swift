/// One way a function is triggered: an entry of a deploy's `triggers` (an extension of this implementation,
/// beside Nex's `trigger_subjects`, which keeps working). Everything but `subject` is a JetStream durable
/// consumer that every copy of the workload shares: a message is acknowledged only after the function
/// succeeded, failures are retried, and a message that keeps failing is dead-lettered (docs/triggers.md).
///
/// Each entry is a JSON object with a `type`; keys a type does not have are refused, with their name.
public enum WorkloadTrigger: Sendable, Equatable {
    /// `{"type": "subject", "subject": "orders.new", "queue": "optional"}`: a core NATS subscription, as
    /// `trigger_subjects` makes (at most once: a message nobody listens for is gone).
    case subject(SubjectTrigger)
    /// `{"type": "stream", "stream": "ORDERS", …}`: the messages of a stream.
    case stream(StreamTrigger)
    /// `{"type": "kv", "bucket": "settings", …}`: changes of a key-value bucket.
    case keyValue(KeyValueTrigger)
    /// `{"type": "object_store", "bucket": "uploads", …}`: objects put into and deleted from a bucket.
    case objectStore(ObjectStoreTrigger)
    /// `{"type": "schedule", "every": "1s"}` or `{"type": "schedule", "cron": "*/10 * * * * *"}`: ticks of a
    /// server-side message schedule, once per tick for the workload however many nodes run it.
    case schedule(ScheduleTrigger)

    /// The `type` values.
    public static let types = ["subject", "stream", "kv", "object_store", "schedule"]

    /// The entry's `type`.
    public var type: String {
        switch self {
        case .subject: "subject"
        case .stream: "stream"
        case .keyValue: "kv"
        case .objectStore: "object_store"
        case .schedule: "schedule"
        }
    }

    /// How a JetStream trigger's messages are delivered (nil for a subject trigger).
    public var delivery: TriggerDelivery? {
        switch self {
        case .subject: nil
        case .stream(let t): t.delivery
        case .keyValue(let t): t.delivery
        case .objectStore(let t): t.delivery
        case .schedule(let t): t.delivery
        }
    }
}

extension WorkloadTrigger {
    /// What the trigger reads, in a few words: `orders.new`, `ORDERS orders.>`, `settings feature.>`,
    /// `uploads`, `every 1s`, `cron 0 0 * * * * Europe/Berlin`.
    public var source: String {
        switch self {
        case .subject(let t): t.queue.map { "\(t.subject) (queue \($0))" } ?? t.subject
        case .stream(let t): t.filterSubject.map { "\(t.stream) \($0)" } ?? t.stream
        case .keyValue(let t): "\(t.bucket) \(t.key ?? ">")"
        case .objectStore(let t): t.bucket
        case .schedule(let t):
            if let every = t.every {
                "every \(every)"
            } else {
                "cron \(t.cron ?? "")" + (t.timezone.map { " \($0)" } ?? "")
            }
        }
    }
}

/// A trigger as INFO describes it: what it reads and, for a JetStream trigger, its consumer's counts.
public struct TriggerStatus: Codable, Sendable, Equatable {
    /// As in the deploy: `subject`, `stream`, `kv`, `object_store` or `schedule`.
    public var type: String
    /// What it reads (``WorkloadTrigger/source``).
    public var source: String
    /// The durable consumer every copy shares (nil for a subject trigger).
    public var consumer: String?
    /// Messages the consumer has not delivered yet (nil when the consumer could not be read).
    public var pending: UInt64?
    /// Messages delivered and not yet acknowledged, across every copy.
    public var ackPending: Int?
    /// Messages delivered more than once, not yet acknowledged.
    public var redelivered: Int?

    public init(
        type: String, source: String, consumer: String? = nil, pending: UInt64? = nil, ackPending: Int? = nil,
        redelivered: Int? = nil
    ) {
        self.type = type
        self.source = source
        self.consumer = consumer
        self.pending = pending
        self.ackPending = ackPending
        self.redelivered = redelivered
    }

    enum CodingKeys: String, CodingKey {
        case type, source, consumer, pending, redelivered
        case ackPending = "ack_pending"
    }
}

/// A core NATS subject trigger.
public struct SubjectTrigger: Codable, Sendable, Equatable {
    public var subject: String
    /// The queue group the copies share (default: the workload's own, `nex-<namespace>-<name>`).
    public var queue: String?

    public init(subject: String, queue: String? = nil) {
        self.subject = subject
        self.queue = queue
    }

    static let keys = ["subject", "queue"]
}

/// How the messages of a JetStream trigger are delivered, retried and given up. Durations are Go's duration
/// text (`30s`, `1m30s`). Every field is optional; ``TriggerDelivery/Defaults`` holds what an absent one means.
public struct TriggerDelivery: Codable, Sendable, Equatable {
    /// The durable consumer's name (default: derived from the namespace and the workload name, so every copy
    /// of the workload shares it).
    public var durable: String?
    /// `all` (default: from the first message kept) or `new` (from the deploy on).
    public var deliver: String?
    /// Deliveries of a message before it is dead-lettered (default 5).
    public var maxDeliver: Int?
    /// The wait before each retry: the first after the first failure, and so on; the last repeats (default:
    /// retry at once). At most `max_deliver - 1` steps.
    public var backoff: [String]?
    /// How long a delivered message waits for its node before the server gives it to another (default 30s).
    /// Long work keeps its message in progress, so this only bounds how long a dead node's messages wait.
    public var ackWait: String?
    /// Messages asked for per pull (default 1); each is still its own invocation with its own ack.
    public var maxBatch: Int?
    /// Messages of this trigger in flight per copy (default 1).
    public var maxConcurrency: Int?
    /// Messages in flight for the whole consumer, across nodes (default: the server's).
    public var maxAckPending: Int?
    /// How long the consumer outlives its last copy before the server removes it (default 24h).
    public var inactiveThreshold: String?
    /// Where a message that failed `max_deliver` times, or permanently, is published (default: nowhere; it is
    /// terminated, and the failure logged).
    public var deadLetterSubject: String?

    public init() {}

    /// What an absent field means.
    public enum Defaults {
        public static let maxDeliver = 5
        public static let ackWait = "30s"
        public static let maxBatch = 1
        public static let maxConcurrency = 1
        public static let inactiveThreshold = "24h"
    }

    enum CodingKeys: String, CodingKey {
        case durable, deliver, backoff
        case maxDeliver = "max_deliver"
        case ackWait = "ack_wait"
        case maxBatch = "max_batch"
        case maxConcurrency = "max_concurrency"
        case maxAckPending = "max_ack_pending"
        case inactiveThreshold = "inactive_threshold"
        case deadLetterSubject = "dead_letter_subject"
    }

    static let keys = [
        "durable", "deliver", "max_deliver", "backoff", "ack_wait", "max_batch", "max_concurrency", "max_ack_pending",
        "inactive_threshold", "dead_letter_subject",
    ]

}

/// The messages of a stream (optionally only those on `filter_subject`).
public struct StreamTrigger: Sendable, Equatable {
    public var stream: String
    public var filterSubject: String?
    public var delivery: TriggerDelivery

    public init(stream: String, filterSubject: String? = nil, delivery: TriggerDelivery = TriggerDelivery()) {
        self.stream = stream
        self.filterSubject = filterSubject
        self.delivery = delivery
    }

    enum CodingKeys: String, CodingKey {
        case stream
        case filterSubject = "filter_subject"
    }
}

/// Changes of the keys of a bucket (all, or those `key` matches, with wildcards): puts, deletes and purges.
public struct KeyValueTrigger: Sendable, Equatable {
    public var bucket: String
    public var key: String?
    /// `put`, `delete`, `purge` (default: all three).
    public var operations: [String]?
    public var delivery: TriggerDelivery

    public init(
        bucket: String, key: String? = nil, operations: [String]? = nil, delivery: TriggerDelivery = TriggerDelivery()
    ) {
        self.bucket = bucket
        self.key = key
        self.operations = operations
        self.delivery = delivery
    }

    public static let operationNames = ["put", "delete", "purge"]

    enum CodingKeys: String, CodingKey { case bucket, key, operations }
}

/// Objects put into and deleted from a bucket.
public struct ObjectStoreTrigger: Sendable, Equatable {
    public var bucket: String
    /// `put`, `delete` (default: both).
    public var operations: [String]?
    public var delivery: TriggerDelivery

    public init(bucket: String, operations: [String]? = nil, delivery: TriggerDelivery = TriggerDelivery()) {
        self.bucket = bucket
        self.operations = operations
        self.delivery = delivery
    }

    public static let operationNames = ["put", "delete"]

    enum CodingKeys: String, CodingKey { case bucket, operations }
}

/// A schedule: `every` (at least `1s`) or a six-field `cron` (seconds first) with an optional `timezone`.
public struct ScheduleTrigger: Sendable, Equatable {
    public var cron: String?
    public var every: String?
    /// An IANA zone (`Europe/Amsterdam`) for `cron` (default UTC).
    public var timezone: String?
    /// What each tick carries (UTF-8; default empty).
    public var payload: String?
    public var delivery: TriggerDelivery

    public init(
        cron: String? = nil, every: String? = nil, timezone: String? = nil, payload: String? = nil,
        delivery: TriggerDelivery = TriggerDelivery()
    ) {
        self.cron = cron
        self.every = every
        self.timezone = timezone
        self.payload = payload
        self.delivery = delivery
    }

    enum CodingKeys: String, CodingKey { case cron, every, timezone, payload }
}

// MARK: - JSON: one flat object per entry, its `type` first

extension WorkloadTrigger: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let type = try container.decode(String.self, forKey: Key(stringValue: "type"))
        let own: [String]
        switch type {
        case "subject": own = SubjectTrigger.keys
        case "stream": own = ["stream", "filter_subject"] + TriggerDelivery.keys
        case "kv": own = ["bucket", "key", "operations"] + TriggerDelivery.keys
        case "object_store": own = ["bucket", "operations"] + TriggerDelivery.keys
        case "schedule": own = ["cron", "every", "timezone", "payload"] + TriggerDelivery.keys
        default:
            throw DecodingError.dataCorruptedError(
                forKey: Key(stringValue: "type"), in: container,
                debugDescription: "unknown trigger type \"\(type)\": use one of \(Self.types.joined(separator: ", "))")
        }
        let allowed = Set(own + ["type"])
        if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !allowed.contains($0) }) {
            throw DecodingError.dataCorruptedError(
                forKey: Key(stringValue: unknown), in: container,
                debugDescription: "a \(type) trigger has no key \"\(unknown)\" (it has \(own.joined(separator: ", ")))")
        }
        func delivery() throws -> TriggerDelivery { try TriggerDelivery(from: decoder) }
        switch type {
        case "subject": self = .subject(try SubjectTrigger(from: decoder))
        case "stream":
            let c = try decoder.container(keyedBy: StreamTrigger.CodingKeys.self)
            self = .stream(
                StreamTrigger(
                    stream: try c.decode(String.self, forKey: .stream),
                    filterSubject: try c.decodeIfPresent(String.self, forKey: .filterSubject), delivery: try delivery())
            )
        case "kv":
            let c = try decoder.container(keyedBy: KeyValueTrigger.CodingKeys.self)
            self = .keyValue(
                KeyValueTrigger(
                    bucket: try c.decode(String.self, forKey: .bucket),
                    key: try c.decodeIfPresent(String.self, forKey: .key),
                    operations: try c.decodeIfPresent([String].self, forKey: .operations), delivery: try delivery()))
        case "object_store":
            let c = try decoder.container(keyedBy: ObjectStoreTrigger.CodingKeys.self)
            self = .objectStore(
                ObjectStoreTrigger(
                    bucket: try c.decode(String.self, forKey: .bucket),
                    operations: try c.decodeIfPresent([String].self, forKey: .operations), delivery: try delivery()))
        default:
            let c = try decoder.container(keyedBy: ScheduleTrigger.CodingKeys.self)
            self = .schedule(
                ScheduleTrigger(
                    cron: try c.decodeIfPresent(String.self, forKey: .cron),
                    every: try c.decodeIfPresent(String.self, forKey: .every),
                    timezone: try c.decodeIfPresent(String.self, forKey: .timezone),
                    payload: try c.decodeIfPresent(String.self, forKey: .payload), delivery: try delivery()))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(type, forKey: Key(stringValue: "type"))
        switch self {
        case .subject(let t):
            try t.encode(to: encoder)
        case .stream(let t):
            var c = encoder.container(keyedBy: StreamTrigger.CodingKeys.self)
            try c.encode(t.stream, forKey: .stream)
            try c.encodeIfPresent(t.filterSubject, forKey: .filterSubject)
        case .keyValue(let t):
            var c = encoder.container(keyedBy: KeyValueTrigger.CodingKeys.self)
            try c.encode(t.bucket, forKey: .bucket)
            try c.encodeIfPresent(t.key, forKey: .key)
            try c.encodeIfPresent(t.operations, forKey: .operations)
        case .objectStore(let t):
            var c = encoder.container(keyedBy: ObjectStoreTrigger.CodingKeys.self)
            try c.encode(t.bucket, forKey: .bucket)
            try c.encodeIfPresent(t.operations, forKey: .operations)
        case .schedule(let t):
            var c = encoder.container(keyedBy: ScheduleTrigger.CodingKeys.self)
            try c.encodeIfPresent(t.cron, forKey: .cron)
            try c.encodeIfPresent(t.every, forKey: .every)
            try c.encodeIfPresent(t.timezone, forKey: .timezone)
            try c.encodeIfPresent(t.payload, forKey: .payload)
        }
        try delivery?.encode(to: encoder)
    }
}
