import NATS

/// How a key-value bucket is made.
public struct KeyValueConfig: Sendable {
    public var bucket: String
    public var description: String?
    /// Values kept per key (1…64).
    public var history: Int = 1
    /// Entries older than this are removed; nil keeps them.
    public var ttl: Duration?
    public var maxBytes: Int64 = -1
    public var maxValueSize: Int32 = -1
    public var storage: StorageType = .file
    public var replicas: Int = 1
    /// Lets keys have TTLs of their own (``KeyValue/create(_:_:ttl:)``, nats-server 2.11+), and keeps a purge
    /// marker this long where a key ran out (by its own TTL or the bucket's), so watchers and consumers of the
    /// bucket see the key go. Nil: no per-key TTLs (a create with a TTL is refused by the server).
    public var limitMarkerTTL: Duration?

    public init(bucket: String, history: Int = 1, ttl: Duration? = nil) {
        self.bucket = bucket
        self.history = history
        self.ttl = ttl
    }
}

/// One value of a key at one revision.
public struct KeyValueEntry: Sendable, Equatable {
    /// What the revision did to the key.
    public enum Operation: String, Sendable {
        case put = "PUT"
        case delete = "DEL"
        case purge = "PURGE"

        /// The operation a message of a bucket's stream records (its `KV-Operation` header; none is a put), for
        /// a consumer of `KV_<bucket>` of its own.
        /// A marker the server left where a key ran out (`Nats-Marker-Reason`) reads as a purge, or as a delete
        /// when it marks a removal.
        public init(headers: NATSHeaders?) {
            if let operation = headers?["KV-Operation"].flatMap(Self.init(rawValue:)) {
                self = operation
            } else if let reason = headers?["Nats-Marker-Reason"] {
                self = reason == "Remove" ? .delete : .purge
            } else {
                self = .put
            }
        }
    }

    public var bucket: String
    public var key: String
    public var value: [UInt8]
    /// The stream sequence of this revision.
    public var revision: UInt64
    public var created: NATSTimestamp?
    public var operation: Operation

    /// The value as UTF-8.
    public var string: String { String(decoding: value, as: UTF8.self) }
}

/// What a watch delivers.
public enum KeyValueWatchEvent: Sendable, Equatable {
    case entry(KeyValueEntry)
    /// Every value stored when the watch started has been delivered.
    case initialValuesDone
}

/// A key-value bucket (the NATS KV conventions: stream `KV_<bucket>`, subjects `$KV.<bucket>.<key>`).
public struct KeyValue: Sendable {
    let js: JetStreamContext
    /// The bucket name.
    public let bucket: String
    /// The stream behind it.
    public let streamName: String
    let prefix: String
    /// Whether reads use direct get (buckets made by nats-py have it off).
    public let usesDirectGet: Bool

    init(js: JetStreamContext, bucket: String, allowDirect: Bool) {
        self.js = js
        self.bucket = bucket
        self.streamName = "KV_\(bucket)"
        self.prefix = "$KV.\(bucket)."
        self.usesDirectGet = allowDirect
    }

    /// Stores `value`; returns the new revision.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) async throws -> UInt64 {
        try Self.checkKey(key)
        return try await js.publish(value, to: prefix + key).sequence
    }

    /// Stores a UTF-8 string.
    @discardableResult
    public func put(_ key: String, _ value: String) async throws -> UInt64 {
        try await put(key, Array(value.utf8))
    }

    /// The latest value of `key`, or nil when it has none or was deleted.
    ///
    /// With direct get (``usesDirectGet``), any replica of a replicated bucket answers, as in every NATS
    /// client: just after a leader change a replica still catching up may not have a write the others
    /// acknowledged yet, and answers as if the key had no value.
    public func get(_ key: String) async throws -> KeyValueEntry? {
        guard let entry = try await lastEntry(key), entry.operation == .put else { return nil }
        return entry
    }

    /// The value of `key` at `revision`, or nil when that revision is not this key's.
    public func get(_ key: String, revision: UInt64) async throws -> KeyValueEntry? {
        try Self.checkKey(key)
        let stored: StoredMessage
        do {
            stored =
                usesDirectGet
                ? try await js.directGet(stream: streamName, sequence: revision)
                : try await js.getMessage(stream: streamName, sequence: revision)
        } catch let e as JetStreamError where e.code == 404 {
            return nil
        }
        guard stored.subject == prefix + key else { return nil }
        let entry = entry(from: stored)
        return entry.operation == .put ? entry : nil
    }

    /// Stores `value` only if `key` has no value (never set, or deleted). Returns the new revision. With a
    /// `ttl`, the key is removed that long after, leaving a purge marker: the bucket needs a
    /// ``KeyValueConfig/limitMarkerTTL``, and the server raises a shorter `ttl` to it (and rounds up to whole
    /// seconds).
    @discardableResult
    public func create(_ key: String, _ value: [UInt8], ttl: Duration? = nil) async throws -> UInt64 {
        do {
            return try await update(key, value, revision: 0, ttl: ttl)
        } catch let e as JetStreamError where e.errorCode == JetStreamError.Known.wrongLastSequence {
            // Allowed when the last revision deleted or purged the key.
            if let last = try await lastEntry(key), last.operation != .put {
                return try await update(key, value, revision: last.revision, ttl: ttl)
            }
            throw JetStreamError(code: 400, errorCode: e.errorCode, description: "key \(key) exists")
        }
    }

    /// Stores `value` only if the latest revision of `key` is `revision` (compare-and-set).
    @discardableResult
    public func update(_ key: String, _ value: [UInt8], revision: UInt64) async throws -> UInt64 {
        try await update(key, value, revision: revision, ttl: nil)
    }

    private func update(_ key: String, _ value: [UInt8], revision: UInt64, ttl: Duration?) async throws -> UInt64 {
        try Self.checkKey(key)
        var options = PublishOptions(expectedLastSubjectSequence: revision)
        options.ttl = ttl.map { .after($0) }
        return try await js.publish(value, to: prefix + key, options: options).sequence
    }

    /// Deletes `key` (a delete marker; history is kept).
    public func delete(_ key: String) async throws {
        try Self.checkKey(key)
        _ = try await js.publish([UInt8](), to: prefix + key, headers: ["KV-Operation": "DEL"])
    }

    /// Purges `key`: removes its history, leaving one purge marker.
    public func purge(_ key: String) async throws {
        try Self.checkKey(key)
        _ = try await js.publish(
            [UInt8](), to: prefix + key, headers: ["KV-Operation": "PURGE", "Nats-Rollup": "sub"])
    }

    /// Keys with a value, optionally only those matching `filter` (a subject pattern such as `users.*`).
    public func keys(matching filter: String = ">") async throws -> [String] {
        var keys: [String] = []
        let ordered = OrderedConsumer(
            js: js, stream: streamName, filterSubjects: [prefix + filter], deliverPolicy: .lastPerSubject,
            headersOnly: true)
        for try await delivery in ordered {
            switch delivery {
            case .caughtUp: return keys
            case .message(let m):
                if Self.operation(m.headers) == .put { keys.append(String(m.subject.dropFirst(prefix.count))) }
            }
        }
        return keys
    }

    /// Every kept revision of `key`, oldest first (empty when it has none).
    public func history(_ key: String) async throws -> [KeyValueEntry] {
        try Self.checkKey(key)
        var entries: [KeyValueEntry] = []
        let ordered = OrderedConsumer(js: js, stream: streamName, filterSubjects: [prefix + key])
        for try await delivery in ordered {
            switch delivery {
            case .caughtUp: return entries
            case .message(let m): entries.append(entry(from: m))
            }
        }
        return entries
    }

    /// Watches keys matching `pattern`: first the current values (or the whole history, or nothing with
    /// `updatesOnly`), then ``KeyValueWatchEvent/initialValuesDone``, then every change as it happens.
    public func watch(
        _ pattern: String = ">", includeHistory: Bool = false, updatesOnly: Bool = false
    ) -> AsyncThrowingMapSequence<OrderedConsumer, KeyValueWatchEvent> {
        let policy: DeliverPolicy = updatesOnly ? .new : (includeHistory ? .all : .lastPerSubject)
        let ordered = OrderedConsumer(
            js: js, stream: streamName, filterSubjects: [prefix + pattern], deliverPolicy: policy)
        let me = self
        return ordered.map { delivery -> KeyValueWatchEvent in
            switch delivery {
            case .caughtUp: return .initialValuesDone
            case .message(let m): return .entry(me.entry(from: m))
            }
        }
    }

    // MARK: Helpers

    func lastEntry(_ key: String) async throws -> KeyValueEntry? {
        try Self.checkKey(key)
        do {
            let stored =
                usesDirectGet
                ? try await js.directGet(stream: streamName, lastOnSubject: prefix + key)
                : try await js.getMessage(stream: streamName, lastOnSubject: prefix + key)
            return entry(from: stored)
        } catch let e as JetStreamError where e.code == 404 {
            return nil
        }
    }

    func entry(from stored: StoredMessage) -> KeyValueEntry {
        KeyValueEntry(
            bucket: bucket, key: String(stored.subject.dropFirst(prefix.count)), value: stored.payload,
            revision: stored.sequence, created: stored.time, operation: Self.operation(stored.headers))
    }

    func entry(from m: JetStreamMessage) -> KeyValueEntry {
        KeyValueEntry(
            bucket: bucket, key: String(m.subject.dropFirst(prefix.count)), value: m.bytes,
            revision: m.metadata.streamSequence, created: m.metadata.timestamp, operation: Self.operation(m.headers))
    }

    static func operation(_ headers: NATSHeaders?) -> KeyValueEntry.Operation {
        KeyValueEntry.Operation(headers: headers)
    }

    /// Keys: `[-/_=.a-zA-Z0-9]`, not starting or ending with `.`.
    static func checkKey(_ key: String) throws {
        let allowed = key.utf8.allSatisfy { c in
            (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || "-/_=.".utf8.contains(c)
        }
        guard !key.isEmpty, allowed, !key.hasPrefix("."), !key.hasSuffix("."), !key.contains("..") else {
            throw JetStreamError.client("invalid key \"\(key)\"", code: 400)
        }
    }

    static func checkBucket(_ bucket: String) throws {
        let ok =
            !bucket.isEmpty
            && bucket.utf8.allSatisfy { c in
                (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 45
            }
        guard ok else { throw JetStreamError.client("invalid bucket name \"\(bucket)\"", code: 400) }
    }
}

extension JetStreamContext {
    /// Creates a key-value bucket (or returns it when it exists with the same settings).
    public func createKeyValue(_ config: KeyValueConfig) async throws -> KeyValue {
        try KeyValue.checkBucket(config.bucket)
        guard (1...64).contains(config.history) else {
            throw JetStreamError.client("history must be 1…64", code: 400)
        }
        var stream = StreamConfig(name: "KV_\(config.bucket)", subjects: ["$KV.\(config.bucket).>"])
        stream.description = config.description
        stream.maxMessagesPerSubject = Int64(config.history)
        stream.maxBytes = config.maxBytes
        stream.maxAge = config.ttl ?? .zero
        stream.maxMessageSize = config.maxValueSize
        stream.storage = config.storage
        stream.replicas = config.replicas
        stream.allowRollup = true
        stream.denyDelete = true
        stream.discard = .new
        stream.allowDirect = true
        let window = Duration.seconds(120)
        stream.duplicateWindow = config.ttl.map { $0 > .zero && $0 < window ? $0 : window } ?? window
        if let markers = config.limitMarkerTTL {
            stream.allowMessageTTL = true
            stream.subjectDeleteMarkerTTL = markers
        }
        let info = try await createStream(stream)
        return KeyValue(js: self, bucket: config.bucket, allowDirect: info.config.allowDirect ?? false)
    }

    /// Opens an existing bucket (made by this library or any other NATS client).
    public func keyValue(_ bucket: String) async throws -> KeyValue {
        try KeyValue.checkBucket(bucket)
        let info = try await streamInfo("KV_\(bucket)")
        return KeyValue(js: self, bucket: bucket, allowDirect: info.config.allowDirect ?? false)
    }

    /// Deletes a bucket and everything in it.
    public func deleteKeyValue(_ bucket: String) async throws {
        try KeyValue.checkBucket(bucket)
        try await deleteStream("KV_\(bucket)")
    }
}
