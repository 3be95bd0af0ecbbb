import Foundation
import Logging
public import NATS
public import NKeys
import NexModels
public import ServiceLifecycle
import Synchronization

/// A Nex node: joins a NATS deployment and answers the Nex control API (`$NEX.*`) as the 0.x contract says.
///
/// So far it answers discovery, INFO and lame duck and refuses deploys with the contract's checks; running
/// workloads (warm agents, sandboxes) is not built yet, so a valid deploy is refused with that reason.
public final class NexNode: Service, Sendable {
    /// The version reported in pings, INFO and events.
    public static let version = "0.1.0"

    public let config: NodeConfiguration
    /// The node's identity: a server nkey (`N…`); its public key is the node id.
    public let identity: NKeyPair
    /// A fresh curve key per start: clients seal deploy environments to it.
    public let xkey: NKeyPair
    let client: NATSClient
    let logger: Logger
    let started = Date()
    let heartbeatInterval: Duration
    let state = Mutex(State())

    struct State {
        var lameDuck = false
        var subscriptions: [NATSSubscription] = []
    }

    /// A node on `client` (which must be connected before ``run()``).
    public init(
        configuration: NodeConfiguration, client: NATSClient, identity: NKeyPair = .generate(.server),
        heartbeatInterval: Duration = .seconds(30), logger: Logger = Logger(label: "nex.node")
    ) {
        self.config = configuration
        self.client = client
        self.identity = identity
        self.xkey = .generate(.curve)
        self.heartbeatInterval = heartbeatInterval
        self.logger = logger
    }

    /// The node id (public server key).
    public var nodeID: String { identity.publicKey }

    /// Whether the node is in lame duck mode.
    public var isLameDuck: Bool { state.withLock { $0.lameDuck } }

    /// Configured tags plus the reserved `nex.*` ones.
    public var tags: [String: String] {
        var t = config.tags
        t["nex.os"] = HostFacts.os
        t["nex.arch"] = HostFacts.arch
        t["nex.cpucount"] = String(HostFacts.cpuCount)
        if config.noSandbox { t["nex.unsafe"] = "true" }
        if isLameDuck { t["nex.lameduck"] = "true" }
        return t
    }

    var uptime: String { GoDuration.format(nanoseconds: Int64(Date().timeIntervalSince(started) * 1e9)) }

    // MARK: Service

    /// Answers the control API, publishes `node_started` and a heartbeat every interval, and on graceful
    /// shutdown unsubscribes and publishes `node_stopped`.
    public func run() async throws {
        try await start()
        // Cancelled (not merely flagged) on graceful shutdown, so a long heartbeat sleep ends at once.
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: self.heartbeatInterval)
                await self.publishHeartbeat()
            }
        }
        await stop(graceful: true)
    }

    /// Subscribes to the control subjects and announces the node.
    public func start() async throws {
        let subjects: [(String, @Sendable (NATSMessage) async throws -> [UInt8]?)] = [
            (NexSubjects.ping, { _ in try self.encode(ReplyKind.ping, self.pingResponse()) }),
            (NexSubjects.ping(node: nodeID), { _ in try self.encode(ReplyKind.ping, self.pingResponse()) }),
            (NexSubjects.auction, { m in try self.auction(m) }),
            ("$NEX.WPING.>", { _ in nil }),  // no workloads run yet, so no node matches
            ("$NEX.INFO.*.\(nodeID)", { m in try self.encode(ReplyKind.info, self.infoResponse(m)) }),
            ("$NEX.DEPLOY.*.\(nodeID)", { m in try await self.deploy(m) }),
            ("$NEX.STOP.*.\(nodeID)", { _ in try self.encode(ReplyKind.stop, error: "no such workload") }),
            (NexSubjects.lameDuck(node: nodeID), { _ in try await self.enterLameDuck() }),
        ]
        for (subject, handler) in subjects {
            let sub = try await client.subscribe(to: subject) { m in
                guard let reply = m.replyTo, let body = try await handler(m) else { return }
                try await self.client.publish(body, to: reply)
            }
            state.withLock { $0.subscriptions.append(sub) }
        }
        try await client.flush()
        await publishEvent(
            NexEventType.nodeStarted,
            NodeStartedEvent(version: Self.version, id: nodeID, tags: tags, publicXkey: xkey.publicKey))
        logger.info("node started", metadata: ["nex.node": "\(nodeID)", "nex.xkey": "\(xkey.publicKey)"])
    }

    /// Stops answering and publishes `node_stopped`.
    public func stop(graceful: Bool) async {
        let subs = state.withLock { s in
            defer { s.subscriptions.removeAll() }
            return s.subscriptions
        }
        for sub in subs { try? await sub.unsubscribe() }
        await publishEvent(NexEventType.nodeStopped, NodeStoppedEvent(id: nodeID, graceful: graceful))
        try? await client.flush()
    }

    // MARK: Handlers

    func pingResponse() -> PingResponse {
        PingResponse(
            nodeID: nodeID, nexus: tags["nexus"], version: Self.version, uptime: uptime, targetXkey: xkey.publicKey,
            tags: tags, runningMachines: 0)
    }

    func infoResponse(_ m: NATSMessage) -> InfoResponse {
        InfoResponse(
            availableAgents: 0, allowDuplicateWorkloads: config.allowDuplicateWorkloads, machines: [],
            memory: HostFacts.memory(), publicXkey: xkey.publicKey, supportedWorkloadTypes: config.workloadTypes,
            tags: tags, uptime: uptime, version: Self.version)
    }

    /// Answers only when the node matches every field of the auction.
    func auction(_ m: NATSMessage) throws -> [UInt8]? {
        let request = (try? JSONDecoder().decode(AuctionRequest.self, from: Data(m.bytes))) ?? AuctionRequest()
        let tags = self.tags
        if let os = request.os, os.lowercased() != HostFacts.os { return nil }
        if let arch = request.arch, arch.lowercased() != HostFacts.arch { return nil }
        if let sandboxed = request.sandboxed, sandboxed == config.noSandbox { return nil }
        for (k, v) in request.tags ?? [:] where tags[k]?.lowercased() != v.lowercased() { return nil }
        for t in request.workloadTypes ?? [] where !config.workloadTypes.contains(t) { return nil }
        if isLameDuck { return nil }
        return try encode(ReplyKind.auction, pingResponse())
    }

    /// Where downloaded artifacts go: `default_resource_dir`, else `$NEX_HOME/workloads` (default ~/.nex).
    var artifactDirectory: String {
        (config.defaultResourceDir ?? NexHome.path) + "/workloads/" + nodeID
    }

    func deploy(_ m: NATSMessage) async throws -> [UInt8] {
        let request: DeployRequest
        do { request = try JSONDecoder().decode(DeployRequest.self, from: Data(m.bytes)) } catch {
            return try encode(ReplyKind.run, error: "malformed deploy request: \(Self.describe(error))")
        }
        var validator = DeployValidator(config: config, xkey: xkey)
        validator.lameDuck = isLameDuck
        switch validator.validate(request) {
        case .failure(let refusal):
            logger.info(
                "deploy refused", metadata: ["nex.workload": "\(request.workloadName)", "reason": "\(refusal)"])
            return try encode(ReplyKind.run, error: refusal.message)
        case .success(let valid):
            let workloadID = UUID().uuidString.lowercased()
            do {
                let artifact = try await ArtifactFetcher(client: client, directory: artifactDirectory).fetch(
                    request.location, expectedHash: valid.hash, workloadID: workloadID,
                    maxBytes: config.nodeLimits.maxWorkloadBytes)
                // Verified; running it needs an agent, which this node does not have yet.
                try? FileManager.default.removeItem(atPath: artifact.path)
            } catch {
                logger.info(
                    "deploy refused", metadata: ["nex.workload": "\(request.workloadName)", "reason": "\(error)"])
                return try encode(ReplyKind.run, error: error.message)
            }
            return try encode(ReplyKind.run, error: "no agent available: this node cannot run workloads yet")
        }
    }

    func enterLameDuck() async throws -> [UInt8] {
        let first = state.withLock { s -> Bool in
            defer { s.lameDuck = true }
            return !s.lameDuck
        }
        if first {
            await publishEvent(NexEventType.nodeEnteredLameDuck, LameDuckEvent(version: Self.version, id: nodeID))
            logger.info("entered lame duck mode", metadata: ["nex.node": "\(nodeID)"])
        }
        return try encode(ReplyKind.lameDuck, LameDuckResponse(nodeID: nodeID, success: true))
    }

    // MARK: Events

    func publishHeartbeat() async {
        await publishEvent(
            NexEventType.heartbeat,
            HeartbeatEvent(
                allowDuplicateWorkloads: config.allowDuplicateWorkloads, nexus: tags["nexus"], nodeID: nodeID,
                runningMachines: 0, tags: tags, uptime: uptime, publicXkey: xkey.publicKey, version: Self.version))
    }

    func publishEvent<T: Codable & Sendable>(_ type: String, _ data: T) async {
        let event = CloudEvent(id: UUID().uuidString, source: nodeID, type: type, data: data)
        guard let body = try? JSONEncoder().encode(event) else { return }
        try? await client.publish(
            Array(body), to: NexSubjects.event(namespace: NexSubjects.systemNamespace, type: type))
    }

    // MARK: Encoding

    func encode<T: Codable & Sendable>(_ kind: String, _ data: T) throws -> [UInt8] {
        Array(try JSONEncoder().encode(Envelope(kind: kind, data: data)))
    }

    func encode(_ kind: String, error: String) throws -> [UInt8] {
        Array(try JSONEncoder().encode(Envelope<RunResponse>(kind: kind, error: error)))
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "missing \(key.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.dataCorrupted(let c): c.debugDescription
        default: "\(error)"
        }
    }
}
