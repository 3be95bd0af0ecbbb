public import NATS

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
        return h.isEmpty ? nil : h
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
        let data = Data(reply.payload.readableBytesView)
        if let envelope = try? decoder.decode(ErrorEnvelope.self, from: data), let error = envelope.error {
            throw error
        }
        do { return try decoder.decode(PubAck.self, from: data) } catch {
            throw JetStreamError.client("unexpected publish acknowledgement: \(String(decoding: data, as: UTF8.self))")
        }
    }
}
