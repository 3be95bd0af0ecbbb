import Crypto
import Foundation  // FileHandle
import NATS
import NUID

/// How an object store is made.
public struct ObjectStoreConfig: Sendable {
    public var bucket: String
    public var description: String?
    public var ttl: Duration?
    public var maxBytes: Int64 = -1
    public var storage: StorageType = .file
    public var replicas: Int = 1

    public init(bucket: String, description: String? = nil) {
        self.bucket = bucket
        self.description = description
    }
}

/// An object's metadata, stored as JSON on its meta subject (the same fields nats.go and nats-py use).
public struct ObjectInfo: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    public var headers: [String: [String]]?
    public var metadata: [String: String]?
    public var options: Options?
    public var bucket: String
    /// The id its chunks are stored under.
    public var nuid: String
    public var size: UInt64
    public var modified: NATSTimestamp?
    public var chunks: UInt32
    /// `SHA-256=<base64url>` of the content.
    public var digest: String?
    public var deleted: Bool?

    public struct Options: Codable, Sendable, Equatable {
        public var maxChunkSize: UInt32?
        enum CodingKeys: String, CodingKey { case maxChunkSize = "max_chunk_size" }
    }

    enum CodingKeys: String, CodingKey {
        case name, description, headers, metadata, options, bucket, nuid, size, chunks, digest, deleted
        case modified = "mtime"
    }
}

/// An object store bucket (stream `OBJ_<bucket>`; chunks on `$O.<bucket>.C.<nuid>`, metadata on
/// `$O.<bucket>.M.<base64url(name)>`).
public struct ObjectStore: Sendable {
    let js: JetStreamContext
    public let bucket: String
    public let streamName: String
    let usesDirectGet: Bool
    /// Size of the chunks `put` writes.
    public var chunkSize = 128 * 1024

    init(js: JetStreamContext, bucket: String, allowDirect: Bool) {
        self.js = js
        self.bucket = bucket
        self.streamName = "OBJ_\(bucket)"
        self.usesDirectGet = allowDirect
    }

    /// Stores `data` under `name`, replacing any object of that name.
    @discardableResult
    public func put(
        _ name: String, data: [UInt8], description: String? = nil, headers: [String: [String]]? = nil,
        metadata: [String: String]? = nil
    ) async throws -> ObjectInfo {
        try await put(
            name, chunks: SingleChunk(bytes: data), description: description, headers: headers, metadata: metadata)
    }

    /// Stores the file at `path` under `name`, read in chunks.
    @discardableResult
    public func put(_ name: String, file path: String, description: String? = nil) async throws -> ObjectInfo {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw JetStreamError.client("cannot read \(path)", code: 400)
        }
        defer { try? handle.close() }  // read only: a failed close loses nothing
        return try await put(name, chunks: FileChunks(handle: handle, size: chunkSize), description: description)
    }

    /// Stores the bytes of an `AsyncSequence` of chunks (any sizes; re-cut to ``chunkSize``) under `name`.
    @discardableResult
    public func put<Chunks: AsyncSequence>(
        _ name: String, chunks: Chunks, description: String? = nil, headers: [String: [String]]? = nil,
        metadata: [String: String]? = nil
    ) async throws -> ObjectInfo where Chunks.Element == [UInt8] {
        try Self.checkName(name)
        let previous = try await info(name, includingDeleted: true)
        let nuid = NUID.next()
        let chunkSubject = "$O.\(bucket).C.\(nuid)"
        var hasher = SHA256()
        var pending: [UInt8] = []
        var size: UInt64 = 0
        var count: UInt32 = 0
        do {
            for try await piece in chunks {
                pending += piece
                while pending.count >= chunkSize {
                    let chunk = Array(pending.prefix(chunkSize))
                    pending.removeFirst(chunkSize)
                    hasher.update(data: chunk)
                    _ = try await js.publish(chunk, to: chunkSubject)
                    size += UInt64(chunk.count)
                    count += 1
                }
            }
            if !pending.isEmpty {
                hasher.update(data: pending)
                _ = try await js.publish(pending, to: chunkSubject)
                size += UInt64(pending.count)
                count += 1
            }
        } catch {
            _ = try? await js.purgeStream(streamName, subject: chunkSubject)  // leave no orphaned chunks
            throw error
        }
        let info = ObjectInfo(
            name: name, description: description, headers: headers, metadata: metadata,
            options: .init(maxChunkSize: UInt32(chunkSize)), bucket: bucket, nuid: nuid, size: size,
            modified: Self.now(), chunks: count, digest: Self.digestText(Array(hasher.finalize())), deleted: nil)
        try await writeMeta(info)
        if let previous, previous.nuid != nuid {
            try await js.purgeStream(streamName, subject: "$O.\(bucket).C.\(previous.nuid)")
        }
        return info
    }

    /// The object's content, checked against its size and digest.
    public func get(_ name: String) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await chunk in try await stream(name) { out += chunk }
        return out
    }

    /// The object's content as chunks, pulled as the caller reads (nothing is buffered ahead beyond the
    /// consumer's batch). The size and digest are checked after the last chunk: a mismatch ends the sequence
    /// with an error, so a reader that reaches the end has read exactly the stored object.
    public func stream(_ name: String) async throws -> ObjectChunks {
        guard let info = try await info(name) else {
            throw JetStreamError(code: 404, errorCode: 0, description: "object \(name) not found")
        }
        return ObjectChunks(info: info, js: js, stream: streamName)
    }

    /// The object's metadata, or nil when there is no such object (or it was deleted).
    public func info(_ name: String) async throws -> ObjectInfo? {
        try await info(name, includingDeleted: false)
    }

    func info(_ name: String, includingDeleted: Bool) async throws -> ObjectInfo? {
        try Self.checkName(name)
        let subject = metaSubject(name)
        let stored: StoredMessage
        do {
            stored =
                usesDirectGet
                ? try await js.directGet(stream: streamName, lastOnSubject: subject)
                : try await js.getMessage(stream: streamName, lastOnSubject: subject)
        } catch let e as JetStreamError where e.code == 404 {
            return nil
        }
        let info = try JSONDecoder().decode(ObjectInfo.self, from: Data(stored.payload))
        if info.deleted == true, !includingDeleted { return nil }
        return info
    }

    /// Deletes the object: a deleted marker replaces its metadata and its chunks are purged.
    public func delete(_ name: String) async throws {
        guard var info = try await info(name) else {
            throw JetStreamError(code: 404, errorCode: 0, description: "object \(name) not found")
        }
        let nuid = info.nuid
        info.deleted = true
        info.size = 0
        info.chunks = 0
        info.digest = nil
        info.modified = Self.now()
        try await writeMeta(info)
        try await js.purgeStream(streamName, subject: "$O.\(bucket).C.\(nuid)")
    }

    /// Metadata of every object that is not deleted.
    public func list() async throws -> [ObjectInfo] {
        var infos: [ObjectInfo] = []
        let ordered = OrderedConsumer(
            js: js, stream: streamName, filterSubjects: ["$O.\(bucket).M.>"], deliverPolicy: .lastPerSubject)
        for try await delivery in ordered {
            switch delivery {
            case .caughtUp: return infos
            case .message(let m):
                // Unreadable metadata: that object is left out rather than failing the list.
                if let info = try? JSONDecoder().decode(ObjectInfo.self, from: Data(m.bytes)), info.deleted != true {
                    infos.append(info)
                }
            }
        }
        return infos
    }

    /// Watches metadata changes: current objects first, `nil` when caught up, then every put and delete.
    public func watch() -> AsyncThrowingCompactMapSequence<OrderedConsumer, ObjectInfo?> {
        let ordered = OrderedConsumer(
            js: js, stream: streamName, filterSubjects: ["$O.\(bucket).M.>"], deliverPolicy: .lastPerSubject)
        return ordered.compactMap { delivery -> ObjectInfo?? in
            switch delivery {
            case .caughtUp: return .some(nil)
            case .message(let m):
                // Unreadable metadata: skipped rather than ending the watch.
                return (try? JSONDecoder().decode(ObjectInfo.self, from: Data(m.bytes))).map { .some($0) }
            }
        }
    }

    // MARK: Helpers

    func metaSubject(_ name: String) -> String {
        "$O.\(bucket).M.\(Data(name.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_"))"
    }

    private func writeMeta(_ info: ObjectInfo) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        _ = try await js.publish(
            Array(try encoder.encode(info)), to: metaSubject(info.name), headers: ["Nats-Rollup": "sub"])
    }

    /// `SHA-256=` and the padded base64url digest, as nats.go and nats-py write it.
    static func digestText(_ digest: [UInt8]) -> String {
        "SHA-256="
            + Data(digest).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
    }

    /// Compares digests ignoring the prefix's case and base64 padding.
    static func sameDigest(_ a: String, _ b: String) -> Bool {
        func norm(_ s: String) -> String {
            var s = s
            if s.uppercased().hasPrefix("SHA-256=") { s = String(s.dropFirst(8)) }
            while s.hasSuffix("=") { s.removeLast() }
            return s
        }
        return norm(a) == norm(b)
    }

    static func now() -> NATSTimestamp {
        let t = Date().timeIntervalSince1970
        return NATSTimestamp(seconds: Int64(t), nanoseconds: Int32((t - t.rounded(.down)) * 1e9))
    }

    static func checkName(_ name: String) throws {
        guard !name.isEmpty else { throw JetStreamError.client("object name is empty", code: 400) }
    }
}

/// One chunk: bytes already in memory.
struct SingleChunk: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let bytes: [UInt8]
    func makeAsyncIterator() -> AsyncStream<[UInt8]>.Iterator {
        AsyncStream { c in
            if !bytes.isEmpty { c.yield(bytes) }
            c.finish()
        }.makeAsyncIterator()
    }
}

/// A file read `size` bytes at a time.
struct FileChunks: AsyncSequence {
    typealias Element = [UInt8]
    let handle: FileHandle
    let size: Int
    func makeAsyncIterator() -> Iterator { Iterator(handle: handle, size: size) }
    struct Iterator: AsyncIteratorProtocol {
        let handle: FileHandle
        let size: Int
        mutating func next() async throws -> [UInt8]? {
            let data = try handle.read(upToCount: size) ?? Data()
            return data.isEmpty ? nil : Array(data)
        }
    }
}

extension JetStreamContext {
    /// Creates an object store bucket.
    public func createObjectStore(_ config: ObjectStoreConfig) async throws -> ObjectStore {
        try KeyValue.checkBucket(config.bucket)
        var stream = StreamConfig(
            name: "OBJ_\(config.bucket)", subjects: ["$O.\(config.bucket).C.>", "$O.\(config.bucket).M.>"])
        stream.description = config.description
        stream.maxAge = config.ttl ?? .zero
        stream.maxBytes = config.maxBytes
        stream.storage = config.storage
        stream.replicas = config.replicas
        stream.discard = .new
        stream.allowRollup = true
        stream.allowDirect = true
        let info = try await createStream(stream)
        return ObjectStore(js: self, bucket: config.bucket, allowDirect: info.config.allowDirect ?? false)
    }

    /// Opens an existing object store (made by this library or any other NATS client).
    public func objectStore(_ bucket: String) async throws -> ObjectStore {
        try KeyValue.checkBucket(bucket)
        let info = try await streamInfo("OBJ_\(bucket)")
        return ObjectStore(js: self, bucket: bucket, allowDirect: info.config.allowDirect ?? false)
    }

    /// Deletes an object store and everything in it.
    public func deleteObjectStore(_ bucket: String) async throws {
        try KeyValue.checkBucket(bucket)
        try await deleteStream("OBJ_\(bucket)")
    }
}

/// The chunks of one object, in order (see ``ObjectStore/stream(_:)``). Iteration runs in the reader's task;
/// stopping early deletes the consumer behind it.
public struct ObjectChunks: AsyncSequence, Sendable {
    public typealias Element = [UInt8]

    /// The object's metadata as it was when reading began.
    public let info: ObjectInfo
    let js: JetStreamContext
    let stream: String

    /// Chunks pulled at once: about 2 MiB in flight, so a big object never queues megabytes on the connection
    /// ahead of other traffic (a request behind 32 MiB of chunks waited tens of milliseconds).
    static let batch = 16

    public func makeAsyncIterator() -> Iterator {
        let consumer =
            info.chunks > 0
            ? OrderedConsumer(
                js: js, stream: stream, filterSubjects: ["$O.\(info.bucket).C.\(info.nuid)"], batch: Self.batch
            ).makeAsyncIterator() : nil
        return Iterator(info: info, consumer: consumer)
    }

    public struct Iterator: AsyncIteratorProtocol {
        let info: ObjectInfo
        var consumer: OrderedConsumer.Iterator?
        var hasher = SHA256()
        var size: UInt64 = 0
        var received: UInt32 = 0
        var finished = false

        init(info: ObjectInfo, consumer: OrderedConsumer.Iterator?) {
            self.info = info
            self.consumer = consumer
        }

        public mutating func next() async throws -> [UInt8]? {
            guard !finished else { return nil }
            if received < info.chunks {
                while let delivery = try await consumer?.next() {
                    guard case .message(let m) = delivery else {
                        // Caught up before the last chunk: the object was replaced or deleted while being read
                        // (its chunks purged), and the rest will never come.
                        finished = true
                        throw JetStreamError.client(
                            "object \(info.name) changed while it was read (\(received) of \(info.chunks) chunks)")
                    }
                    let bytes = m.bytes
                    hasher.update(data: bytes)
                    size += UInt64(bytes.count)
                    received += 1
                    return bytes
                }
                finished = true
                if Task.isCancelled { throw CancellationError() }
                throw JetStreamError.client(
                    "object \(info.name): the stream ended after \(received) of \(info.chunks) chunks")
            }
            finished = true
            consumer = nil
            guard size == info.size else {
                throw JetStreamError.client("object \(info.name): \(size) bytes read, \(info.size) expected")
            }
            let digest = ObjectStore.digestText(Array(hasher.finalize()))
            guard let expected = info.digest, ObjectStore.sameDigest(expected, digest) else {
                throw JetStreamError.client(
                    "object \(info.name): digest mismatch (stored \(info.digest ?? "none"), read \(digest))")
            }
            return nil
        }
    }
}
