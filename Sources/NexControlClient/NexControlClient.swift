import Foundation
public import NATS
public import NATSJetStream
public import NKeys
public import NexModels

/// A typed client of the Nex control API (`$NEX.*`), for any node that speaks the Nex 0.x contract.
public struct NexControlClient: Sendable {
    public let client: NATSClient
    /// Scopes INFO, WPING, DEPLOY, STOP, events and logs.
    public var namespace: String
    /// How long a request waits for its node.
    public var timeout: Duration
    /// How long scatter-gather calls (PING, AUCTION, WPING) wait for more nodes after the first answer.
    public var gatherStall: Duration = .milliseconds(500)
    /// How long scatter-gather calls wait in all (nodes that do not match never answer).
    public var gatherTimeout: Duration = .seconds(2)
    /// How long a deploy may take: the node downloads and verifies the artifact before it answers.
    public var deployTimeout: Duration = .seconds(60)

    public init(client: NATSClient, namespace: String = "default", timeout: Duration = .seconds(5)) {
        self.client = client
        self.namespace = namespace
        self.timeout = timeout
    }

    // MARK: Discovery

    /// Every node's ping reply (empty when no node answers).
    public func ping() async throws -> [PingResponse] {
        try await gather(NexSubjects.ping, [UInt8](), as: PingResponse.self)
    }

    /// One node's ping reply.
    public func ping(node: String) async throws -> PingResponse {
        try await call(NexSubjects.ping(node: node), [UInt8](), as: PingResponse.self)
    }

    /// Nodes that could run a workload matching `request`.
    public func auction(_ request: AuctionRequest) async throws -> [AuctionResponse] {
        try await gather(NexSubjects.auction, Array(try JSONEncoder().encode(request)), as: AuctionResponse.self)
    }

    /// Nodes running workloads of this namespace (or the one named).
    public func workloadPing(workload: String? = nil) async throws -> [WorkloadPingResponse] {
        try await gather(
            NexSubjects.workloadPing(namespace: namespace, workload: workload), [UInt8](), as: WorkloadPingResponse.self
        )
    }

    /// A node's details, its machines filtered to this namespace.
    public func info(node: String) async throws -> InfoResponse {
        try await call(NexSubjects.info(namespace: namespace, node: node), [UInt8](), as: InfoResponse.self)
    }

    // MARK: Workloads

    /// Deploys on `node`; the node's refusal comes back verbatim as ``NexError/Code/refused``.
    public func deploy(_ request: DeployRequest, to node: String) async throws -> RunResponse {
        try await call(
            NexSubjects.deploy(namespace: namespace, node: node), Array(try JSONEncoder().encode(request)),
            as: RunResponse.self, timeout: Swift.max(timeout, deployTimeout))
    }

    /// Stops a workload; only its deploying issuer may (the stop token is signed by `issuer`).
    public func stop(workloadID: String, node: String, issuer: NKeyPair) async throws -> StopResponse {
        let claims = JWTClaims.generic(subject: workloadID, issuer: issuer.publicKey)
        let request = StopRequest(
            nodeID: node, workloadID: workloadID, workloadJWT: try NATSJWT.encode(claims, signedBy: issuer))
        return try await call(
            NexSubjects.stop(namespace: namespace, node: node), Array(try JSONEncoder().encode(request)),
            as: StopResponse.self)
    }

    /// Puts a node in lame duck mode: it refuses deploys from then on.
    public func lameDuck(node: String) async throws -> LameDuckResponse {
        try await call(NexSubjects.lameDuck(node: node), [UInt8](), as: LameDuckResponse.self)
    }

    // MARK: Deploy preparation

    /// Uploads an artifact to an object store (made if missing) and returns its location and hex SHA-256.
    public func uploadArtifact(file path: String, bucket: String = "NEXCLIFILES", key: String) async throws
        -> (location: WorkloadLocation, hash: String)
    {
        let js = JetStreamContext(client: client)
        let store: ObjectStore
        do { store = try await js.objectStore(bucket) } catch let e as JetStreamError where e.code == 404 {
            store = try await js.createObjectStore(ObjectStoreConfig(bucket: bucket))
        }
        let info = try await store.put(key, file: path)
        guard let hash = Self.hexSHA256(fromDigest: info.digest) else {
            throw NexError(.badReply, "the object store did not record a SHA-256 digest")
        }
        return (WorkloadLocation(bucket: bucket, key: key), hash)
    }

    /// Builds a deploy request as the contract's security model asks: the environment sealed with
    /// `publisher` (an `X…` key) to the node's `targetXkey`, and a JWT from `issuer` (an `A…` key) whose
    /// `sub` is a fresh request id and whose `nats` carries the workload's name and hash.
    public static func makeDeployRequest(
        name: String, type: String, location: WorkloadLocation, hash: String, environment: [String: String] = [:],
        issuer: NKeyPair, publisher: NKeyPair, targetNode: String, targetXkey: String,
        triggerSubjects: [String] = [], argv: [String] = [], essential: Bool = false, description: String? = nil,
        hostServices: HostServicesConfig? = nil, maxConcurrency: Int? = nil
    ) throws -> DeployRequest {
        guard issuer.prefix == .account else {
            throw NexError(.invalidRequest, "the issuer must be an account key (A…)")
        }
        guard publisher.prefix == .curve else {
            throw NexError(.invalidRequest, "the publisher must be a curve key (X…)")
        }
        let envJSON = Array(try JSONEncoder().encode(environment))
        let sealed = try publisher.seal(envJSON, to: targetXkey)
        let claims = JWTClaims.generic(
            subject: UUID().uuidString.lowercased(), issuer: issuer.publicKey,
            fields: ["name": .string(name), "hash": .string(hash)])
        var request = DeployRequest(
            location: location, senderPublicKey: publisher.publicKey, targetNode: targetNode, workloadName: name,
            workloadJWT: try NATSJWT.encode(claims, signedBy: issuer), type: type)
        request.hash = hash
        request.environment = Data(sealed).base64EncodedString()
        request.triggerSubjects = triggerSubjects.isEmpty ? nil : triggerSubjects
        request.argv = argv.isEmpty ? nil : argv
        request.essential = essential
        request.description = description
        request.hostServicesConfig = hostServices
        request.maxConcurrency = maxConcurrency
        return request
    }

    /// The hex SHA-256 from an object store digest (`SHA-256=<base64url>`).
    public static func hexSHA256(fromDigest digest: String?) -> String? {
        guard var b64 = digest, b64.uppercased().hasPrefix("SHA-256=") else { return nil }
        b64 = String(b64.dropFirst(8)).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let bytes = Data(base64Encoded: b64), bytes.count == 32 else { return nil }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Events and logs

    /// Events of this namespace (`*` for all), each with its type and raw JSON data.
    public func events(namespace: String? = nil) async throws -> AsyncThrowingMapSequence<NATSSubscription, NexEvent> {
        let sub = try await client.subscribe(to: NexSubjects.events(namespace: namespace ?? self.namespace))
        return sub.map { NexEvent(subject: $0.subject, json: $0.bytes) }
    }

    /// Log lines, filtered by namespace / node / workload name / workload id (nil matches all).
    public func logs(node: String? = nil, workloadName: String? = nil, workloadID: String? = nil) async throws
        -> AsyncThrowingCompactMapSequence<NATSSubscription, LogLine>
    {
        let subject = NexSubjects.logsFilter(
            namespace: namespace, node: node, workloadName: workloadName, workloadID: workloadID)
        let sub = try await client.subscribe(to: subject)
        return sub.compactMap { m in
            // Not a log entry: not one of ours, skipped.
            guard let entry = try? JSONDecoder().decode(LogEntry.self, from: Data(m.bytes)) else { return nil }
            return LogLine(subject: m.subject, entry: entry)
        }
    }

    // MARK: Plumbing

    func call<T: Codable & Sendable>(_ subject: String, _ body: [UInt8], as: T.Type, timeout: Duration? = nil)
        async throws -> T
    {
        let reply: NATSMessage
        do {
            reply = try await client.request(body, to: subject, timeout: timeout ?? self.timeout)
        } catch let e as NATSError where e.code == .noResponders || e.code == .timeout {
            throw NexError(.noNode, "no node answered on \(subject)")
        }
        return try Self.unwrap(reply.bytes, as: T.self)
    }

    func gather<T: Codable & Sendable>(_ subject: String, _ body: [UInt8], as: T.Type) async throws -> [T] {
        let replies: [NATSMessage]
        do {
            replies = try await client.requestMany(body, to: subject, stall: gatherStall, timeout: gatherTimeout)
        } catch let e as NATSError where e.code == .noResponders {
            return []
        }
        // One node's error or unreadable reply must not hide the others' answers.
        return replies.compactMap { try? Self.unwrap($0.bytes, as: T.self) }
    }

    static func unwrap<T: Codable & Sendable>(_ bytes: [UInt8], as: T.Type) throws -> T {
        let envelope: Envelope<T>
        do {
            envelope = try JSONDecoder().decode(Envelope<T>.self, from: Data(bytes))
        } catch {
            throw NexError(
                .badReply, "reply is not a Nex envelope: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        }
        if envelope.isFailure { throw NexError(.refused, envelope.error ?? "refused") }
        guard let data = envelope.data else { throw NexError(.badReply, "reply without data") }
        return data
    }
}

/// An event as received: its subject-derived namespace and type, and the CloudEvent JSON.
public struct NexEvent: Sendable {
    public var namespace: String
    public var type: String
    public var json: [UInt8]

    init(subject: String, json: [UInt8]) {
        let parts = subject.split(separator: ".")
        namespace = parts.count > 2 ? String(parts[2]) : ""
        type = parts.count > 3 ? String(parts[3]) : ""
        self.json = json
    }

    /// Decodes the CloudEvent with `data` of type `T`.
    public func decode<T: Codable & Sendable>(_ type: T.Type) throws -> CloudEvent<T> {
        try JSONDecoder().decode(CloudEvent<T>.self, from: Data(json))
    }
}

/// A log line and where it came from.
public struct LogLine: Sendable {
    public var namespace: String
    public var node: String
    public var workloadName: String
    public var workloadID: String
    public var entry: LogEntry

    init(subject: String, entry: LogEntry) {
        let p = subject.split(separator: ".").map(String.init)
        namespace = p.count > 2 ? p[2] : ""
        node = p.count > 3 ? p[3] : ""
        workloadName = p.count > 4 ? p[4] : ""
        workloadID = p.count > 5 ? p[5] : ""
        self.entry = entry
    }
}
