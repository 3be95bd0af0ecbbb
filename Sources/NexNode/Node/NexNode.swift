import Foundation
import Logging
public import NATS
public import NKeys
import NexModels
public import ServiceLifecycle
import Synchronization

/// A Nex node: joins a NATS deployment, answers the Nex control API (`$NEX.*`) as the 0.x contract says,
/// and runs workloads on a warm pool of agents, each on a private link to the node.
public final class NexNode: Service, Sendable {
    /// The version reported in pings, INFO and events.
    public static let version = "0.1.0"

    public let config: NodeConfiguration
    /// The node's identity: a server nkey (`N…`); its public key is the node id.
    public let identity: NKeyPair
    /// The node's curve key: clients seal deploy environments to it.
    public let xkey: NKeyPair
    let client: NATSClient
    let logger: Logger
    let started = Date()
    let heartbeatInterval: Duration
    let state = Mutex(State())
    let shutdownRequested = AsyncStream<Void>.makeStream()

    struct State {
        var lameDuck = false
        /// Answers the control API while the node runs.
        var control: ControlResponder?
        var runtime: NodeRuntime?
        /// Why the node cannot run workloads, when it cannot.
        var runtimeProblem: String?
    }

    /// A node on `client` (which must be connected before ``run()``). A node that should keep its identity
    /// across restarts takes it from ``NodeHome/open(configuration:)``; the default is a fresh one.
    public init(
        configuration: NodeConfiguration, client: NATSClient, identity: NodeIdentity = .ephemeral(),
        heartbeatInterval: Duration = .seconds(30), tracing: NodeTracer = NodeTracer(),
        logger: Logger = Logger(label: "nex.node")
    ) {
        self.tracing = tracing
        self.config = configuration
        self.client = client
        self.identity = identity.server
        self.xkey = identity.xkey
        self.heartbeatInterval = heartbeatInterval
        self.logger = logger
    }

    /// The node id (public server key).
    public var nodeID: String { identity.publicKey }

    /// Whether the node is in lame duck mode.
    public var isLameDuck: Bool { state.withLock { $0.lameDuck } }

    var runtime: NodeRuntime? { state.withLock { $0.runtime } }

    var events: EventPublisher {
        EventPublisher(client: client, nodeID: nodeID, failures: publishFailures, logger: logger)
    }
    /// Event and log publishes that failed (logged, and counted here).
    let publishFailures = PublishFailures()
    /// The node's Prometheus metrics (served by ``NodeMetricsServer`` when `otel_metrics` is on).
    public let metrics = NodeMetrics()
    /// Where the node's spans go (nowhere unless `otel_traces` is on).
    let tracing: NodeTracer

    /// This node's own files under its resource directory: the workload journal and verified artifacts (kept),
    /// the agents' directories (made anew at each start).
    var home: String { NodeHome.directory(for: config) + "/nodes/" + nodeID }

    /// Configured tags plus the reserved `nex.*` ones.
    public var tags: [String: String] {
        var t = config.tags
        t["nex.os"] = HostFacts.os
        t["nex.arch"] = HostFacts.arch
        t["nex.cpucount"] = String(HostFacts.cpuCount)
        if config.noSandbox { t["nex.unsafe"] = "true" }
        t["nex.sandbox"] = NodeRuntime.driverName(config)
        if isLameDuck { t["nex.lameduck"] = "true" }
        return t
    }

    var uptime: String { GoDuration.format(nanoseconds: Int64(Date().timeIntervalSince(started) * 1e9)) }

    // MARK: Service

    /// Answers the control API, publishes `node_started` and a heartbeat every interval, pings busy agents,
    /// and on graceful shutdown stops its workloads, unsubscribes and publishes `node_stopped`.
    public func run() async throws {
        try await start()
        // Its tasks throw only when cancelled, which is how a graceful shutdown ends them.
        try? await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: self.heartbeatInterval)
                        await self.publishHeartbeat()
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: .seconds(5))
                        await self.runtime?.manager.checkHealth()
                    }
                }
                group.addTask {
                    // Lame duck with drain-and-exit ends the node from inside.
                    for await _ in self.shutdownRequested.stream { return }
                }
                _ = try await group.next()
                group.cancelAll()
            }
        }
        if isLameDuck, config.lameduckDrainAndExit {
            // Moved away on purpose: their records go too (a shutdown signal meanwhile forgets them as well).
            await runtime?.manager.stopAll(reason: "node entered lame duck mode", forget: true)
        }
        await stop(graceful: true)
    }

    /// Starts the warm pool, subscribes to the control subjects and announces the node.
    /// A failure stops what was started.
    public func start() async throws {
        do { try await startParts() } catch {
            await stop(graceful: false)
            throw error
        }
    }

    private func startParts() async throws {
        do {
            let runtime = try await NodeRuntime.start(node: self, home: home)
            state.withLock { $0.runtime = runtime }
        } catch {
            let problem = "\(error)"
            state.withLock { $0.runtimeProblem = problem }
            logger.error("this node cannot run workloads", metadata: ["reason": "\(problem)"])
        }
        // Recorded workloads hold their places before any deploy can arrive (a duplicate sees them), and
        // start once the node answers everything.
        let pending = await reserveRecordedWorkloads()
        let routes: [(subject: String, handler: ControlResponder.Handler)] = [
            (NexSubjects.ping, { _ in try self.encode(ReplyKind.ping, await self.pingResponse()) }),
            (NexSubjects.ping(node: nodeID), { _ in try self.encode(ReplyKind.ping, await self.pingResponse()) }),
            (NexSubjects.auction, { m in try await self.auction(m) }),
            ("$NEX.WPING.>", { m in try await self.workloadPing(m) }),
            ("$NEX.INFO.*.\(nodeID)", { m in try self.encode(ReplyKind.info, await self.infoResponse(m)) }),
            ("$NEX.DEPLOY.*.\(nodeID)", { m in try await self.deploy(m) }),
            ("$NEX.STOP.*.\(nodeID)", { m in try await self.stopWorkload(m) }),
            (NexSubjects.lameDuck(node: nodeID), { _ in try await self.enterLameDuck() }),
        ]
        await keepLogLines()
        let control = try await ControlResponder(client: client, routes: routes, logger: logger)
        state.withLock { $0.control = control }
        await events.publish(
            NexEventType.nodeStarted,
            NodeStartedEvent(version: Self.version, id: nodeID, tags: tags, publicXkey: xkey.publicKey))
        logger.info("node started", metadata: ["nex.node": "\(nodeID)", "nex.xkey": "\(xkey.publicKey)"])
        for notice in config.notices { logger.warning("\(notice)", metadata: ["nex.node": "\(nodeID)"]) }
        await restoreWorkloads(pending)
        await autostart()
    }

    /// Stops answering, stops every workload and agent, and publishes `node_stopped`.
    public func stop(graceful: Bool) async {
        let (control, runtime) = state.withLock { s in
            defer {
                s.control = nil
                s.runtime = nil
            }
            return (s.control, s.runtime)
        }
        await control?.stopTakingRequests()
        // Deploys in flight that wait for an agent are refused by the shutdown, then their answers go out.
        await runtime?.shutdown()
        await control?.finish()
        await NodeRuntime.removeScratch(home: home, logger: logger)
        await events.publish(NexEventType.nodeStopped, NodeStoppedEvent(id: nodeID, graceful: graceful))
        do { try await client.flush() } catch {
            logger.warning("node_stopped may not have reached the server", metadata: ["error": "\(error)"])
        }
    }

    func enterLameDuck() async throws -> [UInt8] {
        let first = state.withLock { s -> Bool in
            defer { s.lameDuck = true }
            return !s.lameDuck
        }
        if first {
            await events.publish(NexEventType.nodeEnteredLameDuck, LameDuckEvent(version: Self.version, id: nodeID))
            logger.info("entered lame duck mode", metadata: ["nex.node": "\(nodeID)"])
            // run() drains and ends the node (no task of its own here).
            if config.lameduckDrainAndExit { shutdownRequested.continuation.yield() }
        }
        return try encode(ReplyKind.lameDuck, LameDuckResponse(nodeID: nodeID, success: true))
    }

    func publishHeartbeat() async {
        let running = await runtime?.manager.count ?? 0
        await events.publish(
            NexEventType.heartbeat,
            HeartbeatEvent(
                allowDuplicateWorkloads: config.allowDuplicateWorkloads, nexus: tags["nexus"], nodeID: nodeID,
                runningMachines: running, tags: tags, uptime: uptime, publicXkey: xkey.publicKey,
                version: Self.version))
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
