import Foundation
public import NATS
public import NIOCore
import NUID
import Synchronization

/// A NATS micro service (ADR-32, `io.nats.micro.v1`): endpoints served in a queue group (default `q`),
/// discovery on `$SRV.PING|INFO|STATS[.<name>[.<id>]]`, and request/error statistics.
///
/// ```swift
/// let service = try await NATSService.start(client: client, config: .init(name: "echo", version: "1.0.0"))
/// try await service.addEndpoint(name: "echo", subject: "svc.echo") { try await $0.respond($0.message.payload) }
/// ```
public final class NATSService: Sendable {
    /// How the service describes itself.
    public struct Config: Sendable {
        /// Letters, digits, `-` and `_`.
        public var name: String
        /// Semantic version, e.g. `1.0.0`.
        public var version: String
        public var description: String?
        public var metadata: [String: String] = [:]
        /// Queue group of every endpoint unless the endpoint names its own.
        public var queueGroup = "q"

        public init(name: String, version: String, description: String? = nil) {
            self.name = name
            self.version = version
            self.description = description
        }
    }

    public let config: Config
    /// This instance's id (a NUID).
    public let id: String
    let client: NATSClient
    let started = Date()
    let state = Mutex(State())

    struct State {
        var endpoints: [Endpoint] = []
        var subscriptions: [NATSSubscription] = []
        var stopped = false
    }

    /// One endpoint and its counters.
    struct Endpoint {
        var name: String
        var subject: String
        var queueGroup: String
        var metadata: [String: String]
        var requests = 0
        var errors = 0
        var lastError = ""
        var processingNanos: Int64 = 0
    }

    private init(client: NATSClient, config: Config) {
        self.client = client
        self.config = config
        self.id = NUID.next()
    }

    /// Starts a service: validates the config and answers discovery requests until ``stop()``.
    public static func start(client: NATSClient, config: Config) async throws -> NATSService {
        guard !config.name.isEmpty, config.name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }),
            config.name.allSatisfy(\.isASCII)
        else { throw NATSError(.invalidConfiguration, "service name must be letters, digits, - or _") }
        guard Self.isSemVer(config.version) else {
            throw NATSError(.invalidConfiguration, "service version must be semantic (like 1.0.0)")
        }
        let service = NATSService(client: client, config: config)
        for verb in ["PING", "INFO", "STATS"] {
            for subject in ["$SRV.\(verb)", "$SRV.\(verb).\(config.name)", "$SRV.\(verb).\(config.name).\(service.id)"]
            {
                let sub = try await client.subscribe(to: subject) { m in
                    guard let reply = m.replyTo else { return }
                    try await client.publish(service.discovery(verb), to: reply)
                }
                service.state.withLock { $0.subscriptions.append(sub) }
            }
        }
        try await client.flush()
        return service
    }

    /// Adds an endpoint answering on `subject` (default: the endpoint's name) in the service's queue group.
    /// A handler that throws is answered with a 500 service error and counted.
    public func addEndpoint(
        name: String, subject: String? = nil, queueGroup: String? = nil, metadata: [String: String] = [:],
        handler: @escaping @Sendable (ServiceRequest) async throws -> Void
    ) async throws {
        let subject = subject ?? name
        let group = queueGroup ?? config.queueGroup
        let index = state.withLock { s -> Int in
            s.endpoints.append(Endpoint(name: name, subject: subject, queueGroup: group, metadata: metadata))
            return s.endpoints.count - 1
        }
        let client = self.client
        // Handlers hold the service: it answers until stop(), even when the caller drops its handle.
        let sub = try await client.subscribe(to: subject, queue: group) { m in
            let request = ServiceRequest(message: m, client: client)
            let start = ContinuousClock.now
            var failure: String?
            do {
                try await handler(request)
            } catch {
                failure = "\(error)"
                // Unsent, the requester times out instead; the failure is counted below either way.
                try? await request.respondError(code: 500, description: "\(error)")
            }
            let elapsed = ContinuousClock.now - start
            let (s, atto) = elapsed.components
            let nanos = s * 1_000_000_000 + atto / 1_000_000_000
            let errored = failure ?? request.errorSent
            self.state.withLock { st in
                st.endpoints[index].requests += 1
                st.endpoints[index].processingNanos += nanos
                if let errored {
                    st.endpoints[index].errors += 1
                    st.endpoints[index].lastError = errored
                }
            }
        }
        state.withLock { $0.subscriptions.append(sub) }
        try await client.flush()
    }

    /// Resets every endpoint's counters.
    public func resetStats() {
        state.withLock { s in
            for i in s.endpoints.indices {
                s.endpoints[i].requests = 0
                s.endpoints[i].errors = 0
                s.endpoints[i].lastError = ""
                s.endpoints[i].processingNanos = 0
            }
        }
    }

    /// Stops answering: unsubscribes every endpoint and discovery subject.
    public func stop() async {
        let subs = state.withLock { s in
            s.stopped = true
            defer { s.subscriptions.removeAll() }
            return s.subscriptions
        }
        for sub in subs { try? await sub.unsubscribe() }  // a closed connection has ended them already
    }

    // MARK: Discovery

    /// The PING, INFO or STATS response, as JSON (ADR-32).
    func discovery(_ verb: String) -> [UInt8] {
        let endpoints = state.withLock { $0.endpoints }
        var out = Discovery(
            type: "io.nats.micro.v1.ping_response", name: config.name, id: id, version: config.version,
            metadata: config.metadata)
        switch verb {
        case "PING":
            break
        case "INFO":
            out.type = "io.nats.micro.v1.info_response"
            out.description = config.description ?? ""
            out.endpoints = endpoints.map {
                .init(name: $0.name, subject: $0.subject, queueGroup: $0.queueGroup, metadata: $0.metadata)
            }
        default:
            out.type = "io.nats.micro.v1.stats_response"
            out.started = Self.rfc3339(started)
            out.endpoints = endpoints.map { e in
                var stats = Discovery.Endpoint(name: e.name, subject: e.subject, queueGroup: e.queueGroup)
                stats.requests = e.requests
                stats.errors = e.errors
                stats.lastError = e.lastError
                stats.processingTime = e.processingNanos
                stats.averageProcessingTime = e.requests == 0 ? 0 : e.processingNanos / Int64(e.requests)
                stats.withData = true
                return stats
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do { return Array(try encoder.encode(out)) } catch {
            // Strings, numbers and string maps: encoding them cannot fail.
            preconditionFailure("a service discovery response could not be encoded: \(error)")
        }
    }

    /// A discovery response; what a verb does not answer with stays nil and is left out.
    private struct Discovery: Encodable {
        var type: String
        var name: String
        var id: String
        var version: String
        var metadata: [String: String]
        var description: String?
        var started: String?
        var endpoints: [Endpoint]?

        struct Endpoint: Encodable {
            var name: String
            var subject: String
            var queueGroup: String
            var metadata: [String: String]?
            var requests: Int?
            var errors: Int?
            var lastError: String?
            var processingTime: Int64?
            var averageProcessingTime: Int64?
            /// Stats carry `"data": null`: optional in ADR-32, but nats-py's parser requires the key.
            var withData = false

            enum CodingKeys: String, CodingKey {
                case name, subject, metadata, data
                case queueGroup = "queue_group"
                case requests = "num_requests"
                case errors = "num_errors"
                case lastError = "last_error"
                case processingTime = "processing_time"
                case averageProcessingTime = "average_processing_time"
            }

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(name, forKey: .name)
                try container.encode(subject, forKey: .subject)
                try container.encode(queueGroup, forKey: .queueGroup)
                try container.encodeIfPresent(metadata, forKey: .metadata)
                try container.encodeIfPresent(requests, forKey: .requests)
                try container.encodeIfPresent(errors, forKey: .errors)
                try container.encodeIfPresent(lastError, forKey: .lastError)
                try container.encodeIfPresent(processingTime, forKey: .processingTime)
                try container.encodeIfPresent(averageProcessingTime, forKey: .averageProcessingTime)
                if withData { try container.encodeNil(forKey: .data) }
            }
        }
    }

    static func rfc3339(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    static func isSemVer(_ v: String) -> Bool {
        let core = v.split(separator: "-", maxSplits: 1)[0].split(separator: "+", maxSplits: 1)[0]
        let parts = core.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }
}

/// A request to a service endpoint.
public final class ServiceRequest: Sendable {
    /// The request as received.
    public let message: NATSMessage
    let client: NATSClient
    private let error = Mutex<String?>(nil)

    init(message: NATSMessage, client: NATSClient) {
        self.message = message
        self.client = client
    }

    /// Answers with `payload`.
    public func respond(_ payload: some Collection<UInt8>, headers: NATSHeaders? = nil) async throws {
        try await message.respond(payload, headers: headers, using: client)
    }

    /// Answers with a `ByteBuffer` payload.
    public func respond(_ payload: ByteBuffer, headers: NATSHeaders? = nil) async throws {
        try await message.respond(payload, headers: headers, using: client)
    }

    /// Answers with a service error (`Nats-Service-Error` and `Nats-Service-Error-Code` headers); counted
    /// in the endpoint's stats.
    public func respondError(code: Int, description: String, data: [UInt8] = []) async throws {
        error.withLock { $0 = description }
        var headers = NATSHeaders()
        headers["Nats-Service-Error"] = description
        headers["Nats-Service-Error-Code"] = String(code)
        try await message.respond(data, headers: headers, using: client)
    }

    var errorSent: String? { error.withLock { $0 } }
}
