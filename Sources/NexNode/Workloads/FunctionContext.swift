import Foundation
import NATS
import NATSJetStream

/// What a function learns of a JetStream message, as its third argument (`ctx`): where the message came from
/// and how often it was delivered; for key-value and object-store triggers, the bucket, key or object name,
/// operation and revision.
struct FunctionContext: Encodable {
    var subject: String
    var headers: [String: String]
    var stream: String
    var sequence: UInt64
    /// 1 on the first attempt.
    var delivered: UInt64
    var pending: UInt64
    var timestamp: NATSTimestamp
    var bucket: String?
    var key: String?
    var name: String?
    var operation: String?
    var revision: UInt64?

    init(_ message: JetStreamMessage, type: String) {
        let m = message.metadata
        subject = message.subject
        var headers: [String: String] = [:]
        for entry in message.headers ?? NATSHeaders() { headers[entry.name] = entry.value }
        self.headers = headers
        stream = m.stream
        sequence = m.streamSequence
        delivered = m.delivered
        pending = m.pending
        timestamp = m.timestamp
        switch type {
        case "kv":
            // $KV.<bucket>.<key>
            let parts = message.subject.split(separator: ".", maxSplits: 2)
            bucket = parts.count > 1 ? String(parts[1]) : nil
            key = parts.count > 2 ? String(parts[2]) : nil
            operation = TriggerEvent.operation(of: message, type: type)
            revision = m.streamSequence
        case "object_store":
            bucket = String(m.stream.dropFirst(4))  // OBJ_<bucket>
            name = TriggerEvent.objectName(message.bytes)
            operation = TriggerEvent.operation(of: message, type: type)
            revision = m.streamSequence
        default:
            break
        }
    }

    /// The JSON the function's `ctx` is parsed from (nil if it cannot be made: the function then gets none).
    var json: [UInt8]? {
        do { return Array(try JSONEncoder().encode(self)) } catch { return nil }
    }
}

/// How a JetStream message reads as a trigger's event.
enum TriggerEvent {
    /// `put`, `delete` or `purge` (key-value); `put` or `delete` (object store); `put` otherwise.
    static func operation(of message: JetStreamMessage, type: String) -> String {
        switch type {
        case "kv":
            switch KeyValueEntry.Operation(headers: message.headers) {
            case .put: "put"
            case .delete: "delete"
            case .purge: "purge"
            }
        case "object_store":
            isDeletedObject(message.bytes) ? "delete" : "put"
        default: "put"
        }
    }

    /// The object's name from its metadata (nil when it is not an object's).
    static func objectName(_ meta: [UInt8]) -> String? {
        do { return try JSONDecoder().decode(ObjectInfo.self, from: Data(meta)).name } catch { return nil }
    }

    /// Whether object metadata says the object was deleted (metadata that is not an object's counts as a put).
    private static func isDeletedObject(_ meta: [UInt8]) -> Bool {
        do { return try JSONDecoder().decode(ObjectInfo.self, from: Data(meta)).deleted == true } catch {
            return false
        }
    }

    /// The first line of an error text, at most 512 characters (a header value).
    static func firstLine(_ text: String) -> String {
        String((text.split(whereSeparator: \.isNewline).first ?? "the function failed").prefix(512))
    }
}
