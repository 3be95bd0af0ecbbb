public import NATS
public import NIOCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The stream's acknowledgement of a published message.
public struct PubAck: Codable, Sendable, Equatable {
    public var stream: String
    public var sequence: UInt64
    /// True when the message was a duplicate (same `Nats-Msg-Id` within the window) and was not stored again.
    public var duplicate: Bool?
    public var domain: String?

    public init(stream: String, sequence: UInt64, duplicate: Bool? = nil, domain: String? = nil) {
        self.stream = stream
        self.sequence = sequence
        self.duplicate = duplicate
        self.domain = domain
    }

    enum CodingKeys: String, CodingKey {
        case stream, duplicate, domain
        case sequence = "seq"
    }
}

/// Expectations and de-duplication for a JetStream publish.
public struct PublishOptions: Sendable {
    /// `Nats-Msg-Id`: a repeat within the stream's duplicate window is acknowledged but not stored.
    public var messageID: String?
    /// `Nats-Expected-Stream`.
    public var expectedStream: String?
    /// `Nats-Expected-Last-Sequence`: the stream's last sequence must be this.
    public var expectedLastSequence: UInt64?
    /// `Nats-Expected-Last-Subject-Sequence`: the last sequence on this subject must be this (0: none yet).
    public var expectedLastSubjectSequence: UInt64?
    /// `Nats-Expected-Last-Msg-Id`.
    public var expectedLastMessageID: String?
    /// `Nats-TTL`: the message is removed this long after it is stored (the stream must allow message TTLs).
    public var ttl: MessageTTL?
    /// Retries when no stream answers yet (status 503, e.g. while a stream starts).
    public var retryAttempts = 2
    public var retryWait: Duration = .milliseconds(250)

    public init(
        messageID: String? = nil, expectedLastSequence: UInt64? = nil, expectedLastSubjectSequence: UInt64? = nil
    ) {
        self.messageID = messageID
        self.expectedLastSequence = expectedLastSequence
        self.expectedLastSubjectSequence = expectedLastSubjectSequence
    }

    func apply(to headers: NATSHeaders?) -> NATSHeaders? {
        var h = headers ?? NATSHeaders()
        if let messageID { h["Nats-Msg-Id"] = messageID }
        if let expectedStream { h["Nats-Expected-Stream"] = expectedStream }
        if let expectedLastSequence { h["Nats-Expected-Last-Sequence"] = String(expectedLastSequence) }
        if let expectedLastSubjectSequence {
            h["Nats-Expected-Last-Subject-Sequence"] = String(expectedLastSubjectSequence)
        }
        if let expectedLastMessageID { h["Nats-Expected-Last-Msg-Id"] = expectedLastMessageID }
        if let ttl { h["Nats-TTL"] = ttl.headerValue }
        return h.isEmpty ? nil : h
    }
}

/// How long a stored message lives (`Nats-TTL`): the server takes whole seconds, at least one.
public enum MessageTTL: Sendable, Equatable {
    /// Removed after this long (rounded up to whole seconds, at least 1 s).
    case after(Duration)
    /// Never removed for age, even when the stream has a `max_age`.
    case never

    /// The header's value: `never`, or a count of seconds.
    public var headerValue: String {
        switch self {
        case .never: return "never"
        case .after(let duration):
            let (seconds, attoseconds) = duration.components
            return "\(max(1, seconds + (attoseconds > 0 ? 1 : 0)))s"
        }
    }
}

extension JetStreamContext {
    /// Publishes to a stream's subject and waits for the stream to acknowledge it.
    public func publish(
        _ payload: some Collection<UInt8>, to subject: String, headers: NATSHeaders? = nil,
        options: PublishOptions = PublishOptions()
    ) async throws -> PubAck {
        let headers = options.apply(to: headers)
        var attempt = 0
        while true {
            do {
                let reply = try await client.request(payload, to: subject, headers: headers, timeout: timeout)
                return try Self.pubAck(from: reply)
            } catch let e as NATSError where e.code == .noResponders && attempt < options.retryAttempts {
                attempt += 1
                try await Task.sleep(for: options.retryWait)
            } catch let e as NATSError where e.code == .noResponders {
                throw JetStreamError(code: 503, errorCode: 0, description: "no stream listens on \(subject)")
            }
        }
    }

    /// Publishes a string as UTF-8 and waits for the acknowledgement.
    public func publish(
        _ payload: String, to subject: String, headers: NATSHeaders? = nil, options: PublishOptions = PublishOptions()
    ) async throws -> PubAck {
        try await publish(Array(payload.utf8), to: subject, headers: headers, options: options)
    }

    static func pubAck(from reply: NATSMessage) throws -> PubAck {
        if let status = reply.status, status == 503 {
            throw JetStreamError(code: 503, errorCode: 0, description: "no stream answered")
        }
        // The common ack needs no JSON decoder (two decodes were most of a key-value put's client time).
        if let ack = PubAck(fastParsing: reply.payload) { return ack }
        let data = Data(reply.payload.readableBytesView)
        // Not an error envelope after all: decoded as an acknowledgement below.
        if mentionsError(reply.payload), let envelope = try? decoder.decode(ErrorEnvelope.self, from: data),
            let error = envelope.error
        {
            throw error
        }
        do { return try decoder.decode(PubAck.self, from: data) } catch {
            throw JetStreamError.client("unexpected publish acknowledgement: \(String(decoding: data, as: UTF8.self))")
        }
    }
}

extension JetStreamContext {
    /// Whether a JSON reply contains `"error"` (a byte scan: cheaper than decoding every reply twice).
    static func mentionsError(_ payload: ByteBuffer) -> Bool {
        let needle = Array(#""error""#.utf8)
        return payload.withUnsafeReadableBytes { bytes in
            guard bytes.count >= needle.count else { return false }
            var i = 0
            while i <= bytes.count - needle.count {
                if bytes[i] == needle[0] {
                    var k = 1
                    while k < needle.count, bytes[i + k] == needle[k] { k += 1 }
                    if k == needle.count { return true }
                }
                i += 1
            }
            return false
        }
    }
}

extension PubAck {
    /// The shape the server sends on success, `{"stream":"NAME","seq":N}` with optional `"domain"` and
    /// `"duplicate":true`, read without a JSON decoder; nil for anything else.
    init?(fastParsing payload: ByteBuffer) {
        let text = String(buffer: payload)
        guard text.hasPrefix(#"{"stream":""#), text.hasSuffix("}"), !text.contains(#""error""#) else { return nil }
        var rest = text.dropFirst(11)
        guard let quote = rest.firstIndex(of: "\""), !rest[..<quote].contains("\\") else { return nil }
        let stream = String(rest[..<quote])
        rest = rest[rest.index(after: quote)...]
        guard rest.hasPrefix(#","seq":"#) else { return nil }
        rest = rest.dropFirst(7)
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        guard let seq = UInt64(digits) else { return nil }
        rest = rest.dropFirst(digits.count)
        var domain: String?
        var duplicate: Bool?
        while rest.first == "," {
            if rest.hasPrefix(#","duplicate":true"#) {
                duplicate = true
                rest = rest.dropFirst(17)
            } else if rest.hasPrefix(#","domain":""#) {
                rest = rest.dropFirst(11)
                guard let end = rest.firstIndex(of: "\"") else { return nil }
                domain = String(rest[..<end])
                rest = rest[rest.index(after: end)...]
            } else {
                return nil
            }
        }
        guard rest == "}" else { return nil }
        self.init(stream: stream, sequence: seq, duplicate: duplicate, domain: domain)
    }
}
