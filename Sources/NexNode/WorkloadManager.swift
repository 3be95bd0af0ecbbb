import Foundation
import Logging
import NATS
import NKeys
import NexAgentLink
import NexModels
import NexSandbox

/// What a function's trigger needs to reach its agent (captured by the trigger subscriptions).
struct FunctionTarget: Sendable {
    var id: String
    var name: String
    var namespace: String
    var link: AgentLinkClient
    /// How many of its triggers may be in flight at once.
    var admission: TriggerAdmission
}

/// Runs the node's workloads: hands deploys to warm agents, stops them for their issuer, follows their exits
/// (restarting essential services with backoff), and forwards their logs.
///
/// Every workload's record and status live in one ``NodeState`` value, changed only through its events; what
/// they return is carried out here (journal writes, agents, triggers). A stop or exit that lands while a start
/// awaits its agent is therefore seen by the start when it resumes, never overwritten.
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
    /// Where accepted deploys are kept (nil: `persist_workloads` is off).
    let journal: WorkloadJournal?
    /// Counts triggers and host-service calls.
    let metrics: NodeMetrics
    /// Spans of triggers and host-service calls.
    let tracing: NodeTracer

    private var state: NodeState

    /// What a workload holds while it is on the node, beside its state: the checked deploy (with its opened
    /// environment, kept in memory only), its copy of the artifact, its agent and its trigger subscriptions.
    private struct Resources {
        var deploy: ValidatedDeploy
        var artifactPath: String
        var agent: Agent?
        var triggers: [NATSSubscription] = []
    }
    private var resources: [String: Resources] = [:]
    /// Essential restarts waiting out their backoff, by the new workload id (cancelled at shutdown).
    private var restarts: [String: OwnedTasks.Handle] = [:]
    /// The manager's own tasks (restart timers, host calls): cancelled and awaited by ``stopAll(reason:forget:)``.
    nonisolated let tasks = OwnedTasks()
    private var closed = false
    /// A lame-duck drain began: every stop from now on removes its workload's record.
    private var draining = false
    /// The drain's stops, which a shutdown arriving meanwhile waits for (so their deletes are made).
    private var drain: Task<Void, Never>?
    /// Replayed records being started: a start that fails keeps the record.
    private var replaying: Set<String> = []

    init(
        config: NodeConfiguration, pool: AgentPool, internalNATS: InternalNATS, events: EventPublisher,
        journal: WorkloadJournal?, metrics: NodeMetrics, tracing: NodeTracer, logger: Logger,
        isLameDuck: @escaping @Sendable () -> Bool
    ) {
        self.config = config
        self.pool = pool
        self.internalNATS = internalNATS
        self.events = events
        self.journal = journal
        self.metrics = metrics
        self.tracing = tracing
        self.logger = logger
        self.isLameDuck = isLameDuck
        self.hostServices = HostServiceConnections(
            client: events.client, config: config.hostServicesConfig,
            denyPublish: NexSubjects.alwaysDeniedTriggers + config.denyTriggerSubjects)
        self.state = NodeState(
            policy: .init(
                initialBackoff: .milliseconds(config.restartBackoffInitialMs),
                maxBackoff: .milliseconds(config.restartBackoffMaxMs), maxRestarts: config.maxRestarts))
    }

    /// Workloads on the node.
    var count: Int { state.workloads().count }

    /// Whether a lame-duck drain began (every record goes).
    var isDraining: Bool { draining }

    /// The workloads of `namespace` (all when nil), oldest first.
    func all(in namespace: String? = nil) -> [NodeState.Entry] { state.workloads(in: namespace) }

    func workload(agent: String) -> NodeState.Entry? { state.entry(agent: agent) }

    /// What a metrics scrape reports of the workloads: how many of each namespace and type, which are here,
    /// their bytes, and the sandbox of each that has an agent (read outside the actor: usage is file reads).
    func metricsLevels() -> (
        workloads: [WorkloadKind: Int], present: Set<WorkloadName>, deployedBytes: Int,
        sandboxes: [(WorkloadName, any AgentSandbox)]
    ) {
        var kinds: [WorkloadKind: Int] = [:]
        var present: Set<WorkloadName> = []
        var sandboxes: [(WorkloadName, any AgentSandbox)] = []
        for entry in state.workloads() {
            kinds[WorkloadKind(namespace: entry.record.namespace, type: entry.record.type), default: 0] += 1
            let name = WorkloadName(namespace: entry.record.namespace, workload: entry.record.name)
            present.insert(name)
            if let sandbox = resources[entry.id]?.agent?.sandbox { sandboxes.append((name, sandbox)) }
        }
        return (kinds, present, state.totalBytes, sandboxes)
    }

    // MARK: Deploy

    /// The duplicate and count checks, made before the artifact is downloaded; on success a place is held
    /// until the workload is accepted by ``start(_:record:reservation:artifactPath:persist:alreadyRecorded:)``
    /// or given up with ``release(_:)``.
    func reserve(name: String, namespace: String) -> Result<NodeState.Reservation, NexError> {
        if closed { return .failure(NexError(.unavailable, "the node is shutting down: deploy to another node")) }
        return state.reserve(
            name: name, namespace: namespace, allowDuplicates: config.allowDuplicateWorkloads,
            maxWorkloads: config.nodeLimits.maxWorkloads)
    }

    func release(_ reservation: NodeState.Reservation) { state.release(reservation) }

    /// Accepts a verified deploy (recording it first when `persist`) and runs it on a warm agent.
    func start(
        _ deploy: ValidatedDeploy, record: WorkloadRecord, reservation: NodeState.Reservation, artifactPath: String,
        persist: Bool, alreadyRecorded: Bool = false
    ) async -> Result<RunResponse, NexError> {
        defer { state.release(reservation) }
        // Reading the executable's header is file work: done before the actor's state is looked at.
        let staticProblem =
            pool.isSandboxed && record.request.workloadType == .native
            ? await Self.staticExecutableProblem(at: artifactPath) : nil
        if closed {
            return .failure(
                NexError(.unavailable, "the node is shutting down: deploy to another node", isTransient: !draining))
        }
        if let refusal = admissionProblem(record, staticProblem: staticProblem) { return .failure(refusal) }
        // A replayed record stays when its start fails for a reason that may pass (no agent in time).
        if alreadyRecorded { replaying.insert(record.id) }
        let changes = state.accepted(
            record, reservation: reservation, persist: persist, alreadyRecorded: alreadyRecorded)
        resources[record.id] = Resources(deploy: deploy, artifactPath: artifactPath)
        do { try await journal?.commit(changes) } catch {
            _ = state.removed(record.id, forget: false)
            resources[record.id] = nil
            return .failure(
                NexError(
                    .storage,
                    "cannot record the workload (\(error)): check that the node's resource directory is writable"))
        }
        return await launch(record.id)
    }

    /// What refuses a workload on this node today, before it is accepted: `max_total_bytes`, and a sandbox
    /// that runs static executables only.
    private func admissionProblem(_ record: WorkloadRecord, staticProblem: String?) -> NexError? {
        if let max = config.nodeLimits.maxTotalBytes, state.totalBytes + record.totalBytes > max {
            return NexError(
                .limitExceeded,
                "node_limits.max_total_bytes (\(max)) would be exceeded: stop a workload or use another node")
        }
        if let problem = staticProblem {
            return NexError(
                .unsupported,
                "the \(pool.driverName) sandbox runs static executables only: \(problem) (build it static, "
                    + "e.g. swift build --static-swift-stdlib or CGO_ENABLED=0, or run a no_sandbox node)")
        }
        return nil
    }

    /// Gives a workload in `starting` to an agent and waits for the agent to run it.
    private func launch(_ id: String) async -> Result<RunResponse, NexError> {
        let agent: Agent
        do { agent = try await pool.take(timeout: .milliseconds(config.agentHandshakeTimeoutMs)) } catch {
            return await failStart(id, .unavailable, "no agent available: \(error)")
        }
        guard state.assigned(id, agent: agent.id), var held = resources[id], let entry = state.entries[id] else {
            await destroy(agent)
            return .failure(NexError(.unavailable, "the workload was stopped before it started"))
        }
        held.agent = agent
        resources[id] = held
        let record = entry.record
        let inside = agent.workDirectory + "/workload"
        let artifactPath = held.artifactPath
        do {
            try await BlockingIO.run {
                if link(artifactPath, inside) != 0 {
                    try FileManager.default.copyItem(atPath: artifactPath, toPath: inside)
                }
            }
        } catch {
            return await failStart(id, .storage, "cannot give the artifact to the agent: \(error)")
        }
        var environment = environment(for: held.deploy)
        if pool.isSandboxed, record.request.workloadType == .native {
            do { environment = try await Self.openServers(in: environment, sandbox: agent.sandbox) } catch {
                return await failStart(id, .unavailable, "cannot let the workload reach its NATS servers: \(error)")
            }
        }
        let concurrency = record.request.maxConcurrency ?? ProcessInfo.processInfo.activeProcessorCount
        let request = AgentDeployRequest(
            workloadID: id, workloadName: record.name, namespace: record.namespace, type: record.type,
            argv: record.request.argv ?? [], environment: environment, essential: record.essential,
            artifactPath: agent.sandbox.workDirectoryInside + "/workload", totalBytes: record.totalBytes,
            triggerSubjects: record.request.triggerSubjects ?? [], limits: config.functionLimits,
            maxConcurrency: concurrency)
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
            return await failStart(id, .invalidRequest, response.message ?? "the agent refused the workload")
        }
        switch state.started(id) {
        case .gone, .stopRequested:
            // The stop that ended it cleans up.
            return .failure(NexError(.unavailable, "the workload was stopped before it started"))
        case .running:
            break
        }
        let target = FunctionTarget(
            id: id, name: record.name, namespace: record.namespace, link: agent.link,
            admission: TriggerAdmission(running: concurrency, queued: config.functionLimits.queueDepth))
        let subscriptions: [NATSSubscription]
        let triggerSubjects =
            record.request.workloadType?.isFunction == true ? record.request.triggerSubjects ?? [] : []
        do { subscriptions = try await subscribeTriggers(of: target, subjects: triggerSubjects) } catch {
            let replayed = replaying.remove(id) != nil
            await end(id, code: -1, message: "cannot subscribe to the trigger subjects: \(error)", forget: !replayed)
            return .failure(
                NexError(.unavailable, "cannot subscribe to the trigger subjects: \(error)", isTransient: replayed))
        }
        guard case .running = state.entries[id]?.status else {
            for sub in subscriptions { try? await sub.unsubscribe() }
            return .failure(NexError(.unavailable, "the workload was stopped before it started"))
        }
        resources[id]?.triggers = subscriptions
        replaying.remove(id)
        logger.info(
            "workload deployed",
            metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(id)", "nex.agent": "\(agent.id)"])
        await events.publish(
            NexEventType.workloadDeployed,
            WorkloadEvent(
                code: 0, message: "workload deployed", workloadID: id, workloadName: record.name,
                essential: record.essential, totalBytes: record.totalBytes), namespace: record.namespace)
        if let early = state.entries[id]?.earlyExit { await exited(agentID: agent.id, early) }
        return .success(
            RunResponse(id: id, issuer: held.deploy.claims.issuer, name: record.name, started: true))
    }

    /// A start that failed: the workload is forgotten (its record too) and its agent destroyed.
    private func failStart(_ id: String, _ code: NexError.Code, _ reason: String) async -> Result<RunResponse, NexError>
    {
        // A stop under way (the node's shutdown keeps the record) does its own clean-up.
        if case .stopping = state.entries[id]?.status { return .failure(NexError(code, reason)) }
        let replayed = replaying.remove(id) != nil
        await cleanUp(id, forget: !replayed, removeArtifact: false)
        if replayed {
            return .failure(NexError(code, reason + " (the record is kept for the next start)", isTransient: true))
        }
        return .failure(NexError(code, reason))
    }

    // MARK: Stop

    /// Stops a workload for the issuer that deployed it. A stop from another namespace, or for an unknown id,
    /// is "no such workload" (ids cannot be probed).
    func stop(_ request: StopRequest, namespace: String) async -> Result<StopResponse, NexError> {
        guard let entry = state.workloads(in: namespace).first(where: { $0.id == request.workloadID }),
            let deploy = resources[entry.id]?.deploy
        else {
            return .failure(NexError(.notFound, "no such workload"))
        }
        let claims: JWTClaims
        do { claims = try NATSJWT.verify(request.workloadJWT) } catch {
            return .failure(
                NexError(.unauthorized, "invalid stop JWT: \(error.message) (sign it with the issuer's account seed)"))
        }
        guard claims.issuer == deploy.claims.issuer else {
            return .failure(
                NexError(.unauthorized, "stop refused: only the issuer that deployed the workload may stop it"))
        }
        guard claims.id != deploy.claims.id, request.workloadJWT != deploy.request.workloadJWT else {
            return .failure(
                NexError(
                    .unauthorized,
                    "stop refused: the deploy token cannot be replayed as a stop token: sign a new stop token"))
        }
        if !claims.subject.isEmpty, claims.subject != entry.id {
            return .failure(NexError(.unauthorized, "stop refused: the token is for workload \(claims.subject)"))
        }
        guard await end(entry.id, code: 0, message: "stopped by its issuer", forget: true) else {
            return .failure(
                NexError(
                    .invalidRequest,
                    "workload \(entry.id) stopped, but its record could not be removed: it would start again when "
                        + "the node restarts (check the node's resource directory, then stop it again after a restart)")
            )
        }
        return .success(StopResponse(id: entry.id, issuer: claims.issuer, stopped: true))
    }

    /// Stops every workload. `forget` (a lame-duck drain) removes their records; a node shutdown keeps them
    /// so the node starts them again. No workload starts or restarts afterwards.
    func stopAll(reason: String, forget: Bool) async {
        // Nothing starts afterwards: a drain ends with the node's exit. Once drained, a later stop (the
        // shutdown that follows, or one racing the drain) forgets too.
        closed = true
        for handle in restarts.values { tasks.cancel(handle) }
        restarts.removeAll()
        if forget, drain == nil {
            draining = true
            let ids = state.entries.keys.sorted()
            drain = Task {
                for id in ids { await self.end(id, code: 0, message: reason, forget: true) }
            }
        }
        await drain?.value
        for entry in state.entries.values.sorted(by: { $0.id < $1.id }) {
            await end(entry.id, code: 0, message: reason, forget: draining)
        }
        // Host calls first: one still opening a connection would store it after closeAll.
        await tasks.shutdown()
        await hostServices.closeAll()
    }

    /// Undeploys a workload: the agent stops it (SIGTERM, then SIGKILL), the sandbox is destroyed, and
    /// `workload_undeployed` is published.
    /// Returns false when the journal could not be updated.
    @discardableResult
    private func end(_ id: String, code: Int, message: String, forget: Bool) async -> Bool {
        guard let entry = state.stopRequested(id) else { return true }
        if let agentID = entry.status.agent {
            do {
                _ = try await internalNATS.request(
                    [], to: AgentSubjects.undeploy(agent: agentID), agent: agentID, timeout: .seconds(8))
            } catch {
                // The sandbox is destroyed next either way; the workload just had no chance to stop cleanly.
                logger.warning(
                    "the agent did not confirm the stop; destroying its sandbox",
                    metadata: ["nex.workload": "\(id)", "nex.agent": "\(agentID)", "error": "\(error)"])
            }
        }
        let hadStarted = if case .running = entry.status { true } else { false }
        let recorded = await cleanUp(id, forget: forget, removeArtifact: true)
        if hadStarted { await announceUndeployed(entry.record, code: code, message: message) }
        return recorded
    }

    /// Removes a workload from the state (and its record when `forget`), unsubscribes its triggers, releases
    /// its host services and destroys its agent. Each part is taken from the tables first, so a second
    /// clean-up of the same workload does nothing.
    @discardableResult
    private func cleanUp(_ id: String, forget: Bool, removeArtifact: Bool) async -> Bool {
        let changes = state.removed(id, forget: forget)
        let recorded = await commit(changes)
        guard let held = resources.removeValue(forKey: id) else { return recorded }
        for sub in held.triggers { try? await sub.unsubscribe() }
        await hostServices.release(workloadID: id)
        if let agent = held.agent { await destroy(agent) }
        if removeArtifact { await BlockingIO.remove(held.artifactPath, what: "a workload's artifact", logger: logger) }
        return recorded
    }

    private func announceUndeployed(_ record: WorkloadRecord, code: Int, message: String) async {
        logger.info(
            "workload undeployed",
            metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)", "reason": "\(message)"])
        await events.publish(
            NexEventType.workloadUndeployed,
            WorkloadEvent(
                code: code, message: message, workloadID: record.id, workloadName: record.name,
                essential: record.essential, totalBytes: record.totalBytes), namespace: record.namespace)
    }

    private func destroy(_ agent: Agent) async {
        await agent.sandbox.destroy(grace: .seconds(6))
        internalNATS.removeAgent(agent.id)
        await BlockingIO.remove(agent.workDirectory, what: "an agent's directory", logger: logger)
    }

    /// Why a sandbox cannot run the executable at `path` (nil: it is static), read off the cooperative pool.
    private static func staticExecutableProblem(at path: String) async -> String? {
        await BlockingIO.run { StaticExecutable.problem(at: path) }
    }

    /// Writes journal changes; a failure is logged (the workload runs on, but would not survive a restart
    /// as recorded).
    @discardableResult
    private func commit(_ changes: [NodeState.Change]) async -> Bool {
        do {
            try await journal?.commit(changes)
            return true
        } catch {
            logger.error(
                "cannot update the workload journal", metadata: ["error": "\(error)", "changes": "\(changes.count)"])
            return false
        }
    }

    // MARK: Agents' reports

    /// The workload's process ended by itself.
    func exited(agentID: String, _ report: WorkloadExited) async {
        let (outcome, changes) = state.exited(
            agent: agentID, report: report, lameDuck: isLameDuck() || closed, newID: UUID().uuidString.lowercased())
        if case .restart(let old, let new, let delay) = outcome {
            // Before any await: the new run keeps the checked deploy and the artifact copy, and its timer is
            // owned at once (a shutdown meanwhile cancels it).
            if var held = resources[old.id] {
                held.triggers = []
                held.agent = nil
                resources[new.id] = held
            }
            restarts[new.id] = tasks.spawn {
                do { try await Task.sleep(for: delay) } catch { return }
                await self.restartDue(new.id)
            }
        }
        await commit(changes)
        switch outcome {
        case .ignored:
            return
        case .ended(let entry):
            await cleanUp(entry.id, forget: true, removeArtifact: true)
            await announceUndeployed(entry.record, code: report.code, message: report.message)
        case .restart(let old, let new, let delay):
            await cleanUp(old.id, forget: false, removeArtifact: false)
            await announceUndeployed(old.record, code: report.code, message: report.message)
            logger.info(
                "restarting essential workload",
                metadata: ["nex.workload": "\(new.name)", "retry": "\(new.retryCount)", "delay": "\(delay)"])
        }
    }

    /// An agent process died.
    func agentDied(_ agent: Agent, reason: String) async {
        guard let entry = state.entry(agent: agent.id) else { return }
        await exited(agentID: agent.id, WorkloadExited(workloadID: entry.id, code: -1, message: reason))
    }

    private func restartDue(_ id: String) async {
        restarts[id] = nil
        guard !Task.isCancelled, !closed else { return }
        guard !isLameDuck() else {
            await cleanUp(id, forget: true, removeArtifact: true)
            return
        }
        guard state.restartDue(id) else { return }
        if case .failure(let refusal) = await launch(id) {
            logger.error(
                "essential workload could not restart", metadata: ["nex.workload_id": "\(id)", "error": "\(refusal)"])
        }
    }

    /// Forwards a line a function logged (it came on the agent's link) to the workload's log subject.
    func log(agentID: String, level: Int, text: [UInt8]) async {
        guard let entry = state.entry(agent: agentID) else { return }
        let line = LogEntry(text: String(decoding: text, as: UTF8.self), level: level, id: entry.id)
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(line)) } catch {
            logger.warning("a function's log line cannot be encoded", metadata: ["error": "\(error)"])
            return
        }
        await events.log(body, namespace: entry.record.namespace, workloadName: entry.record.name, workloadID: entry.id)
    }

    /// Forwards an agent's log entry to the workload's log subject.
    func log(agentID: String, body: [UInt8]) async {
        guard let entry = state.entry(agent: agentID) else { return }
        await events.log(body, namespace: entry.record.namespace, workloadName: entry.record.name, workloadID: entry.id)
    }

    // MARK: Health

    /// Pings every agent that runs a workload; three missed pings in a row end the workload.
    func checkHealth(timeout: Duration) async {
        for entry in state.workloads() {
            guard case .running(let agentID) = entry.status else { continue }
            let ok: Bool
            do {
                _ = try await internalNATS.request(
                    [], to: AgentSubjects.ping(agent: agentID), agent: agentID, timeout: timeout)
                ok = true
            } catch { ok = false }
            if state.pinged(entry.id, ok: ok) {
                await exited(
                    agentID: agentID,
                    WorkloadExited(workloadID: entry.id, code: -1, message: "agent stopped answering pings"))
            }
        }
    }
}
