public import NATS
import NIOCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A message read back from a stream.
public struct StoredMessage: Sendable {
    public var subject: String
    public var sequence: UInt64
    public var headers: NATSHeaders?
    public var payload: [UInt8]
    public var time: NATSTimestamp?
}

extension JetStreamContext {
    /// Creates a stream; fails if one with the same name but another configuration exists.
    public func createStream(_ config: StreamConfig) async throws -> StreamInfo {
        try Self.checkName(config.name)
        return try await api("STREAM.CREATE.\(config.name)", config)
    }

    /// Updates a stream's configuration.
    public func updateStream(_ config: StreamConfig) async throws -> StreamInfo {
        try Self.checkName(config.name)
        return try await api("STREAM.UPDATE.\(config.name)", config)
    }

    /// Creates the stream, or updates it when it exists.
    public func createOrUpdateStream(_ config: StreamConfig) async throws -> StreamInfo {
        do {
            return try await updateStream(config)
        } catch let e as JetStreamError where e.errorCode == JetStreamError.Known.streamNotFound {
            return try await createStream(config)
        }
    }

    /// A stream's configuration and state.
    public func streamInfo(_ name: String) async throws -> StreamInfo {
        try Self.checkName(name)
        return try await api("STREAM.INFO.\(name)")
    }

    /// How many messages the stream holds on each subject that matches `filter` (wildcards allowed), across
    /// pages (`STREAM.INFO` with `subjects_filter`). Subjects without messages are not listed.
    public func subjectCounts(stream name: String, filter: String) async throws -> [String: UInt64] {
        try Self.checkName(name)
        struct Request: Encodable {
            var subjectsFilter: String
            var offset: Int
            enum CodingKeys: String, CodingKey {
                case subjectsFilter = "subjects_filter"
                case offset
            }
        }
        struct Page: Decodable {
            struct State: Decodable { var subjects: [String: UInt64]? }
            var state: State
            var total: Int?
        }
        var counts: [String: UInt64] = [:]
        var offset = 0
        while true {
            let page: Page = try await api("STREAM.INFO.\(name)", Request(subjectsFilter: filter, offset: offset))
            let subjects = page.state.subjects ?? [:]
            counts.merge(subjects) { _, new in new }
            // The offset is where the server got to (pages of sorted subjects), not how many were seen: subjects
            // added between pages may repeat some. One page unless the server says there are more.
            offset += subjects.count
            if subjects.isEmpty || offset >= (page.total ?? 0) { return counts }
        }
    }

    /// Deletes a stream and its messages.
    public func deleteStream(_ name: String) async throws {
        try Self.checkName(name)
        let _: Success = try await api("STREAM.DELETE.\(name)")
    }

    /// Purges a stream: everything, or only `subject`, or up to (not including) `sequence`, or all but the
    /// last `keep`. Returns the number of messages purged.
    @discardableResult
    public func purgeStream(
        _ name: String, subject: String? = nil, sequence: UInt64? = nil, keep: UInt64? = nil
    ) async throws -> UInt64 {
        try Self.checkName(name)
        struct Request: Encodable {
            var filter: String?
            var seq: UInt64?
            var keep: UInt64?
        }
        struct Response: Decodable { var purged: UInt64 }
        let r: Response = try await api("STREAM.PURGE.\(name)", Request(filter: subject, seq: sequence, keep: keep))
        return r.purged
    }

    /// Names of all streams (or those listening on `subject`), across pages.
    public func streamNames(subject: String? = nil) async throws -> [String] {
        struct Request: Encodable {
            var offset: Int
            var subject: String?
        }
        struct Page: Decodable {
            var streams: [String]?
            var total: Int
            var limit: Int
        }
        var names: [String] = []
        while true {
            let page: Page = try await api("STREAM.NAMES", Request(offset: names.count, subject: subject))
            names += page.streams ?? []
            if names.count >= page.total || (page.streams ?? []).isEmpty { return names }
        }
    }

    /// Information about every stream, across pages.
    public func streams() async throws -> [StreamInfo] {
        struct Request: Encodable { var offset: Int }
        struct Page: Decodable {
            var streams: [StreamInfo]?
            var total: Int
        }
        var all: [StreamInfo] = []
        while true {
            let page: Page = try await api("STREAM.LIST", Request(offset: all.count))
            all += page.streams ?? []
            if all.count >= page.total || (page.streams ?? []).isEmpty { return all }
        }
    }

    /// Reads one message through the stream leader (`STREAM.MSG.GET`): by sequence, or the last on `subject`.
    public func getMessage(stream: String, sequence: UInt64? = nil, lastOnSubject subject: String? = nil)
        async throws -> StoredMessage
    {
        try Self.checkName(stream)
        struct Request: Encodable {
            var seq: UInt64?
            var lastBySubject: String?
            enum CodingKeys: String, CodingKey {
                case seq
                case lastBySubject = "last_by_subj"
            }
        }
        struct Response: Decodable {
            struct Message: Decodable {
                var subject: String
                var seq: UInt64
                var hdrs: String?
                var data: String?
                var time: NATSTimestamp?
            }
            var message: Message
        }
        let r: Response = try await api("STREAM.MSG.GET.\(stream)", Request(seq: sequence, lastBySubject: subject))
        var headers: NATSHeaders?
        if let h = r.message.hdrs, let raw = Data(base64Encoded: h), !raw.isEmpty {
            headers = try NATSHeaders.parse(ByteBuffer(bytes: raw))
        }
        let payload = r.message.data.flatMap { Data(base64Encoded: $0) }.map { Array($0) } ?? []
        return StoredMessage(
            subject: r.message.subject, sequence: r.message.seq, headers: headers, payload: payload,
            time: r.message.time)
    }

    /// Reads one message from any replica (`DIRECT.GET`; the stream needs `allow_direct`).
    public func directGet(stream: String, sequence: UInt64? = nil, lastOnSubject subject: String? = nil)
        async throws -> StoredMessage
    {
        try Self.checkName(stream)
        let reply: NATSMessage
        do { reply = try await directGetRequest(stream: stream, sequence: sequence, lastOnSubject: subject) } catch let
            e
            as NATSError where e.code == .noResponders
        {
            throw JetStreamError(code: 503, errorCode: 0, description: "no replica of \(stream) answers direct get")
        }
        return try Self.storedMessage(fromDirectGet: reply)
    }

    private func directGetRequest(stream: String, sequence: UInt64?, lastOnSubject subject: String?) async throws
        -> NATSMessage
    {
        let reply: NATSMessage
        if let subject, sequence == nil {
            reply = try await client.request(
                [UInt8](), to: "\(apiPrefix).DIRECT.GET.\(stream).\(subject)", timeout: timeout)
        } else {
            struct Request: Encodable {
                var seq: UInt64?
                var last_by_subj: String?
            }
            let body = Array(try Self.encoder.encode(Request(seq: sequence, last_by_subj: subject)))
            reply = try await client.request(body, to: "\(apiPrefix).DIRECT.GET.\(stream)", timeout: timeout)
        }
        return reply
    }

    static func storedMessage(fromDirectGet reply: NATSMessage) throws -> StoredMessage {
        if let status = reply.status, status >= 400 {
            let text = reply.headers?.statusDescription ?? "status \(status)"
            throw JetStreamError(
                code: status, errorCode: status == 404 ? JetStreamError.Known.messageNotFound : 0, description: text)
        }
        guard var headers = reply.headers, let subject = headers["Nats-Subject"],
            let sequence = headers["Nats-Sequence"].flatMap({ UInt64($0) })
        else { throw JetStreamError.client("direct get reply without Nats-Subject/Nats-Sequence") }
        let time = headers["Nats-Time-Stamp"].flatMap(NATSTimestamp.init(parsing:))
        for h in ["Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Last-Sequence"] {
            headers.remove(h)
        }
        return StoredMessage(
            subject: subject, sequence: sequence, headers: headers.isEmpty ? nil : headers,
            payload: Array(reply.payload.readableBytesView), time: time)
    }

    /// Stream and consumer names may not contain `.`, `*`, `>`, whitespace or path separators.
    static func checkName(_ name: String) throws {
        guard !name.isEmpty,
            !name.contains(where: { ".*> \t\r\n/\\".contains($0) })
        else { throw JetStreamError.client("invalid name \"\(name)\"", code: 400) }
    }
}

struct Success: Decodable {
    var success: Bool
}
