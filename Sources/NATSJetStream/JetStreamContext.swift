public import NATS

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// JetStream on a NATS connection: streams, consumers, publishing with acknowledgement, and the
/// key-value and object stores built on them.
public struct JetStreamContext: Sendable {
    /// The client requests go through.
    public let client: NATSClient
    /// `$JS.API`, `$JS.<domain>.API`, or a custom prefix (for imported JetStream).
    public let apiPrefix: String
    /// The domain, when one was given.
    public let domain: String?
    /// Timeout of each API request.
    public var timeout: Duration

    /// A context for `client`; `domain` selects a JetStream domain, `apiPrefix` overrides the prefix.
    public init(client: NATSClient, domain: String? = nil, apiPrefix: String? = nil, timeout: Duration = .seconds(5)) {
        self.client = client
        self.domain = domain
        self.timeout = timeout
        if let apiPrefix {
            self.apiPrefix = apiPrefix.hasSuffix(".") ? String(apiPrefix.dropLast()) : apiPrefix
        } else if let domain {
            self.apiPrefix = "$JS.\(domain).API"
        } else {
            self.apiPrefix = "$JS.API"
        }
    }

    /// Sends a JetStream API request and decodes the reply, turning `{"error":…}` into ``JetStreamError``.
    func api<Response: Decodable>(
        _ subject: String, _ body: some Encodable, as: Response.Type = Response.self
    ) async throws -> Response {
        try await api(subject, bytes: Array(try Self.encoder.encode(body)))
    }

    func api<Response: Decodable>(
        _ subject: String, bytes: [UInt8] = [], as: Response.Type = Response.self
    ) async throws -> Response {
        let reply: NATSMessage
        do {
            reply = try await client.request(bytes, to: "\(apiPrefix).\(subject)", timeout: timeout)
        } catch let e as NATSError where e.code == .noResponders {
            throw JetStreamError(code: 503, errorCode: 0, description: "JetStream is not enabled (no responders)")
        }
        let data = Data(reply.payload.readableBytesView)
        // Not an error envelope after all: decoded as the response below.
        if Self.mentionsError(reply.payload), let envelope = try? Self.decoder.decode(ErrorEnvelope.self, from: data),
            let error = envelope.error
        {
            throw error
        }
        do {
            return try Self.decoder.decode(Response.self, from: data)
        } catch {
            throw JetStreamError.client("unexpected reply to \(subject): \(error)")
        }
    }

    struct ErrorEnvelope: Decodable {
        var error: JetStreamError?
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()

    static let decoder = JSONDecoder()

    /// Account-level JetStream information (`$JS.API.INFO`).
    public func accountInfo() async throws -> AccountInfo {
        try await api("INFO")
    }
}

/// Usage and limits of the account.
public struct AccountInfo: Codable, Sendable {
    public var memory: UInt64
    public var storage: UInt64
    public var streams: Int
    public var consumers: Int
    public var domain: String?
}

/// Names of an empty request body for APIs that take none.
struct Empty: Codable {}
