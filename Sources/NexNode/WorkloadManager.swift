import Foundation
import Logging
import NATS
import NKeys
import NexModels
import NexSandbox

/// A workload running on one of the node's agents.
struct Workload: Sendable {
    var id: String
    var namespace: String
    var deploy: ValidatedDeploy
    /// The node's verified copy of the artifact (kept for restarts).
    var artifactPath: String
    var totalBytes: Int
    var deployedAt = Date()
    var retryCount: Int
    var agent: Agent
    var healthy = true
    var missedPings = 0
    /// Set once a stop began, so the exit it causes is not treated as a crash.
    var stopping = false
    /// False until the agent accepted the deploy; logs are forwarded from the start.
    var started = false
    /// An exit reported before the agent's deploy answer arrived (a workload that ends at once).
    var earlyExit: WorkloadExited?
    /// A function's trigger subscriptions on the node's NATS connection.
    var triggers: [NATSSubscription] = []

    var name: String { deploy.request.workloadName }
    var type: String { deploy.request.type }
    var essential: Bool { deploy.request.essential ?? false }
}

/// Owns the running workloads: hands deploys to warm agents, stops them for their issuer, follows their
/// exits (restarting essential services with backoff), and forwards their logs.
actor WorkloadManager {
    let config: NodeConfiguration
    let pool: AgentPool
    let internalNATS: InternalNATS
    let events: EventPublisher
    let logger: Logger
    /// Reads the node's lame-duck flag (restarts stop in lame duck).
    let isLameDuck: @Sendable () -> Bool
    /// Host services of the functions: the connection each one's host calls use.
    let hostServices: HostServiceConnections

    private var workloads: [String: Workload] = [:]
    private var byAgent: [String: String] = [:]
    /// `namespace/name` of deploys in flight, so duplicates and limits count them.
    private var inFlight: [String: Int] = [:]

    init(
        config: NodeConfiguration, pool: AgentPool, internalNATS: InternalNATS, events: EventPublisher,
        logger: Logger, isLameDuck: @escaping @Sendable () -> Bool
    ) {
        self.config = config
        self.pool = pool
        self.internalNATS = internalNATS
        self.events = events
        self.logger = logger
        self.isLameDuck = isLameDuck
        self.hostServices = HostServiceConnections(
            client: events.client, config: config.hostServicesConfig,
            denyPublish: NexSubjects.alwaysDeniedTriggers + config.denyTriggerSubjects)
    }

    var count: Int { workloads.count }

    func workloads(id: String) -> Workload? { workloads[id] }

    func agentWorkload(_ agentID: String) -> String? { byAgent[agentID] }

    func all(in namespace: String? = nil) -> [Workload] {
        workloads.values.filter { namespace == nil || $0.namespace == namespace }.sorted {
            $0.deployedAt < $1.deployedAt
        }
    }

    // MARK: Deploy

    /// The duplicate and count checks, made before the artifact is downloaded.
    func admit(name: String, namespace: String) -> DeployRefusal? {
        let key = namespace + "/" + name
        if !config.allowDuplicateWorkloads,
            inFlight[key, default: 0] > 0 || workloads.values.contains(where: { $0.namespace + "/" + $0.name == key })
        {
            return DeployRefusal("workload \(name) is already running in namespace \(namespace) on this node")
        }
        if let max = config.nodeLimits.maxWorkloads, workloads.count + inFlight.values.reduce(0, +) >= max {
            return DeployRefusal("node_limits.max_workloads (\(max)) reached")
        }
        return nil
    }

    /// Reserves a slot for a deploy in flight; release it with ``release(name:namespace:)``.
    func reserve(name: String, namespace: String) -> DeployRefusal? {
        if let refusal = admit(name: name, namespace: namespace) { return refusal }
        inFlight[namespace + "/" + name, default: 0] += 1
        return nil
    }

    func release(name: String, namespace: String) {
        let key = namespace + "/" + name
        inFlight[key, default: 1] -= 1
        if inFlight[key] == 0 { inFlight[key] = nil }
    }

    /// Runs a verified deploy on a warm agent.
    func start(
        _ deploy: ValidatedDeploy, namespace: String, workloadID: String, artifactPath: String, totalBytes: Int,
        retryCount: Int = 0
    ) async -> Result<RunResponse, DeployRefusal> {
        if let max = config.nodeLimits.maxTotalBytes, workloads.values.map(\.totalBytes).reduce(totalBytes, +) > max {
            return .failure(DeployRefusal("node_limits.max_total_bytes (\(max)) would be exceeded"))
        }
        if pool.isSandboxed, deploy.request.type == "native", let problem = StaticExecutable.problem(at: artifactPath) {
            return .failure(DeployRefusal("the \(pool.driverName) sandbox runs static executables only: \(problem)"))
        }
        let agent: Agent
        do { agent = try await pool.take(timeout: .milliseconds(config.agentHandshakeTimeoutMs)) } catch {
            return .failure(DeployRefusal("no agent available: \(error)"))
        }
        let inside = agent.workDirectory + "/workload"
        if link(artifactPath, inside) != 0 {
            try? FileManager.default.copyItem(atPath: artifactPath, toPath: inside)
        }
        var serviceEnvironment = environment(for: deploy)
        if pool.isSandboxed, deploy.request.type == "native" {
            do {
                serviceEnvironment = try await Self.openServers(in: serviceEnvironment, sandbox: agent.sandbox)
            } catch {
                await destroy(agent)
                return .failure(DeployRefusal("cannot let the workload reach its NATS servers: \(error)"))
            }
        }
        let request = AgentDeployRequest(
            workloadID: workloadID, workloadName: deploy.request.workloadName, namespace: namespace,
            type: deploy.request.type, argv: deploy.request.argv ?? [],
            environment: serviceEnvironment, essential: deploy.request.essential ?? false,
            artifactPath: agent.sandbox.workDirectoryInside + "/workload", totalBytes: totalBytes,
            triggerSubjects: deploy.request.triggerSubjects ?? [], limits: config.functionLimits)
        // Known before the agent answers, so output and an immediate exit are attributed to it.
        var workload = Workload(
            id: workloadID, namespace: namespace, deploy: deploy, artifactPath: artifactPath, totalBytes: totalBytes,
            retryCount: retryCount, agent: agent)
        workloads[workloadID] = workload
        byAgent[agent.id] = workloadID
        let response: AgentResponse
        do {
            let reply = try await internalNATS.request(
                Array(try JSONEncoder().encode(request)), to: AgentSubjects.deploy(agent: agent.id), agent: agent.id,
                timeout: .seconds(10))
            response = try JSONDecoder().decode(AgentResponse.self, from: Data(reply.bytes))
        } catch {
            response = AgentResponse(ok: false, message: "the agent did not answer the deploy: \(error)")
        }
        guard response.ok else {
            workloads[workloadID] = nil
            byAgent[agent.id] = nil
            await destroy(agent)
            return .failure(DeployRefusal(response.message ?? "the agent refused the workload"))
        }
        workload = workloads[workloadID] ?? workload
        workload.started = true
        do { workload.triggers = try await subscribeTriggers(of: workload) } catch {
            workloads[workloadID] = nil
            byAgent[agent.id] = nil
            await destroy(agent)
            return .failure(DeployRefusal("cannot subscribe to the trigger subjects: \(error)"))
        }
        workloads[workloadID] = workload
        logger.info(
            "workload deployed",
            metadata: [
                "nex.workload": "\(workload.name)", "nex.workload_id": "\(workloadID)", "nex.agent": "\(agent.id)",
            ])
        await events.publish(
            NexEventType.workloadDeployed,
            WorkloadEvent(
                code: 0, message: "workload deployed", workloadID: workloadID, workloadName: workload.name,
                essential: workload.essential, totalBytes: totalBytes), namespace: namespace)
        if let early = workload.earlyExit {
            Task { await self.exited(agentID: agent.id, early) }
        }
        return .success(RunResponse(id: workloadID, issuer: deploy.claims.issuer, name: workload.name, started: true))
    }

    /// The variables that name the NATS servers a service is given: the only servers a sandboxed service can
    /// reach. Keys as the agent passes them on (upper-cased).
    static let serverVariables = ["NATS_URL", "NEX_HOSTSERVICES_NATS_SERVER"]

    /// Opens the servers named in ``serverVariables`` (comma-separated URLs) in the sandbox and rewrites
    /// each URL to the address the workload dials inside.
    static func openServers(in environment: [String: String], sandbox: any AgentSandbox) async throws -> [String:
        String]
    {
        var env = environment
        var endpoints: [NetworkEndpoint] = []
        var parsed: [(key: String, urls: [URLComponents])] = []
        for (key, value) in environment where serverVariables.contains(key.uppercased()) {
            let urls = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.map { text in
                URLComponents(string: text.contains("://") ? text : "nats://" + text)
            }
            guard urls.allSatisfy({ $0?.host?.isEmpty == false }) else { continue }
            let components = urls.compactMap { $0 }
            for url in components {
                let endpoint = NetworkEndpoint(host: url.host ?? "", port: url.port ?? 4222)
                if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
            }
            parsed.append((key, components))
        }
        guard !endpoints.isEmpty else { return env }
        let inside = try await sandbox.allowConnections(to: endpoints)
        for (key, urls) in parsed {
            env[key] = urls.map { url in
                var copy = url
                let endpoint = NetworkEndpoint(host: url.host ?? "", port: url.port ?? 4222)
                let mapped = inside[endpoints.firstIndex(of: endpoint) ?? 0]
                copy.host = mapped.host
                copy.port = mapped.port
                return copy.string ?? ""
            }.joined(separator: ",")
        }
        return env
    }

    /// The deploy's environment plus host-service connection settings for services that want them
    /// (the deploy's own `host_services_config` over the node's).
    func environment(for deploy: ValidatedDeploy) -> [String: String] {
        var env = deploy.environment
        let node = config.hostServicesConfig?.nats
        let mine = deploy.request.hostServicesConfig
        let settings = [
            ("NEX_HOSTSERVICES_NATS_SERVER", mine?.natsURL ?? node?.natsURL),
            ("NEX_HOSTSERVICES_NATS_USER_JWT", mine?.natsUserJWT ?? node?.natsUserJWT),
            ("NEX_HOSTSERVICES_NATS_USER_SEED", mine?.natsUserSeed ?? node?.natsUserSeed),
        ]
        for case (let key, let value?) in settings where env[key] == nil { env[key] = value }
        return env
    }

    // MARK: Stop

    /// Stops a workload for the issuer that deployed it. A stop from another namespace, or for an unknown id,
    /// is "no such workload" (ids cannot be probed).
    func stop(_ request: StopRequest, namespace: String) async -> Result<StopResponse, DeployRefusal> {
        guard let workload = workloads[request.workloadID], workload.namespace == namespace, !workload.stopping else {
            return .failure(DeployRefusal("no such workload"))
        }
        let claims: JWTClaims
        do { claims = try NATSJWT.verify(request.workloadJWT) } catch {
            return .failure(DeployRefusal("invalid stop JWT: \(error.message)"))
        }
        guard claims.issuer == workload.deploy.claims.issuer else {
            return .failure(DeployRefusal("stop refused: only the issuer that deployed the workload may stop it"))
        }
        guard claims.id != workload.deploy.claims.id, request.workloadJWT != workload.deploy.request.workloadJWT else {
            return .failure(DeployRefusal("stop refused: the deploy token cannot be replayed as a stop token"))
        }
        if !claims.subject.isEmpty, claims.subject != workload.id {
            return .failure(DeployRefusal("stop refused: the token is for workload \(claims.subject)"))
        }
        await end(workload.id, code: 0, message: "stopped by its issuer", keepArtifact: false)
        return .success(StopResponse(id: workload.id, issuer: claims.issuer, stopped: true))
    }

    /// Stops every workload (graceful shutdown, lame-duck drain).
    func stopAll(reason: String) async {
        for workload in all() { await end(workload.id, code: 0, message: reason, keepArtifact: false) }
        await hostServices.closeAll()
    }

    /// Undeploys a workload: the agent stops it (SIGTERM, then SIGKILL), the sandbox is destroyed, and
    /// `workload_undeployed` is published.
    private func end(_ id: String, code: Int, message: String, keepArtifact: Bool) async {
        guard var workload = workloads[id], !workload.stopping else { return }
        workload.stopping = true
        workloads[id] = workload
        _ = try? await internalNATS.request(
            [], to: AgentSubjects.undeploy(agent: workload.agent.id), agent: workload.agent.id, timeout: .seconds(8))
        await finish(workload, code: code, message: message, keepArtifact: keepArtifact)
    }

    private func finish(_ workload: Workload, code: Int, message: String, keepArtifact: Bool) async {
        guard let current = workloads.removeValue(forKey: workload.id) else { return }
        for sub in current.triggers { try? await sub.unsubscribe() }
        byAgent[workload.agent.id] = nil
        await hostServices.release(workloadID: workload.id)
        await destroy(workload.agent)
        if !keepArtifact { try? FileManager.default.removeItem(atPath: workload.artifactPath) }
        logger.info(
            "workload undeployed",
            metadata: ["nex.workload": "\(workload.name)", "nex.workload_id": "\(workload.id)", "reason": "\(message)"])
        await events.publish(
            NexEventType.workloadUndeployed,
            WorkloadEvent(
                code: code, message: message, workloadID: workload.id, workloadName: workload.name,
                essential: workload.essential, totalBytes: workload.totalBytes), namespace: workload.namespace)
    }

    private func destroy(_ agent: Agent) async {
        await agent.sandbox.destroy(grace: .seconds(6))
        internalNATS.removeAgent(agent.id)
        try? FileManager.default.removeItem(atPath: agent.workDirectory)
    }

    // MARK: Agents' reports

    /// The workload's process ended by itself.
    func exited(agentID: String, _ report: WorkloadExited) async {
        guard let id = byAgent[agentID], var workload = workloads[id], !workload.stopping else { return }
        guard workload.started else {
            workload.earlyExit = report
            workloads[id] = workload
            return
        }
        await ended(workload, code: report.code, message: report.message)
    }

    /// An agent process died.
    func agentDied(_ agent: Agent, reason: String) async {
        guard let id = byAgent[agent.id], let workload = workloads[id], !workload.stopping, workload.started else {
            return
        }
        await ended(workload, code: -1, message: reason)
    }

    private func ended(_ workload: Workload, code: Int, message: String) async {
        let restart = workload.essential && code != 0 && !isLameDuck() && canRestart(workload)
        var stopped = workload
        stopped.stopping = true
        workloads[workload.id] = stopped
        await finish(workload, code: code, message: message, keepArtifact: restart)
        guard restart else { return }
        let delay = Self.backoff(
            retry: workload.retryCount, initial: .milliseconds(config.restartBackoffInitialMs),
            max: .milliseconds(config.restartBackoffMaxMs))
        logger.info(
            "restarting essential workload",
            metadata: ["nex.workload": "\(workload.name)", "retry": "\(workload.retryCount + 1)", "delay": "\(delay)"])
        Task { await self.restart(workload, after: delay) }
    }

    private func canRestart(_ workload: Workload) -> Bool {
        config.maxRestarts == 0 || workload.retryCount < config.maxRestarts
    }

    /// Exponential backoff: `initial · 2^retry`, capped at `max`.
    static func backoff(retry: Int, initial: Duration, max: Duration) -> Duration {
        let factor = 1 << Swift.min(retry, 20)
        return Swift.min(initial * factor, max)
    }

    private func restart(_ old: Workload, after delay: Duration) async {
        try? await Task.sleep(for: delay)
        guard !isLameDuck() else {
            try? FileManager.default.removeItem(atPath: old.artifactPath)
            return
        }
        var deploy = old.deploy
        deploy.request.retryCount = old.retryCount + 1
        deploy.request.retriedAt = ISO8601DateFormatter().string(from: Date())
        let id = UUID().uuidString.lowercased()
        let result = await start(
            deploy, namespace: old.namespace, workloadID: id, artifactPath: old.artifactPath,
            totalBytes: old.totalBytes, retryCount: old.retryCount + 1)
        if case .failure(let refusal) = result {
            logger.error(
                "essential workload could not restart",
                metadata: ["nex.workload": "\(old.name)", "error": "\(refusal)"])
            try? FileManager.default.removeItem(atPath: old.artifactPath)
        }
    }

    /// Forwards an agent's log entry to the workload's log subject.
    func log(agentID: String, body: [UInt8]) async {
        guard let id = byAgent[agentID], let workload = workloads[id] else { return }
        await events.log(body, namespace: workload.namespace, workloadName: workload.name, workloadID: id)
    }

    // MARK: Health

    /// Pings every agent that runs a workload; three missed pings in a row end the workload.
    func checkHealth(timeout: Duration) async {
        for workload in all() {
            let ok: Bool
            do {
                _ = try await internalNATS.request(
                    [], to: AgentSubjects.ping(agent: workload.agent.id), agent: workload.agent.id, timeout: timeout)
                ok = true
            } catch { ok = false }
            guard var current = workloads[workload.id], !current.stopping else { continue }
            current.healthy = ok
            current.missedPings = ok ? 0 : current.missedPings + 1
            workloads[workload.id] = current
            if current.missedPings >= 3 {
                await ended(current, code: -1, message: "agent stopped answering pings")
            }
        }
    }
}
