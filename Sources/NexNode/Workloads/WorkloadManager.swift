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
    /// The NATS servers a sandboxed service may be given.
    let sandboxServers: SandboxServerPolicy
    /// What workloads may name as subjects (here: where a trigger's answer may go).
    let subjectPolicy: SubjectPolicy

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
        config: NodeConfiguration, pool: AgentPool, events: EventPublisher,
        journal: WorkloadJournal?, metrics: NodeMetrics, tracing: NodeTracer, logger: Logger,
        isLameDuck: @escaping @Sendable () -> Bool
    ) {
        self.config = config
        self.pool = pool
        self.events = events
        self.journal = journal
        self.metrics = metrics
        self.tracing = tracing
        self.logger = logger
        self.isLameDuck = isLameDuck
        self.hostServices = HostServiceConnections(
            client: events.client, config: config.hostServicesConfig, subjects: config.workloadSubjects,
            metrics: metrics)
        self.subjectPolicy = config.workloadSubjects
        self.sandboxServers = SandboxServerPolicy(nodeServers: events.client.configuration.servers, config: config)
        self.state = NodeState(policy: config.restartPolicy)
    }

    /// Workloads on the node.
    var count: Int { state.workloads().count }

    /// Whether a lame-duck drain began (every record goes).
    var isDraining: Bool { draining }

    /// Whether the node is stopping: nothing starts any more.
    var isClosed: Bool { closed }

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

    /// Gives a workload in `starting` to an agent and waits for the agent to run it. `restart`: an essential
    /// workload's restart, whose failure is another failed run (retried with backoff), never the end of it.
    private func launch(_ id: String, restart: Bool = false) async -> Result<RunResponse, NexError> {
        let agent: Agent
        do { agent = try await pool.take(timeout: .milliseconds(config.agentHandshakeTimeoutMs)) } catch {
            return await failStart(id, .unavailable, "no agent available: \(error)", restart: restart)
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
            return await failStart(id, .storage, "cannot give the artifact to the agent: \(error)", restart: restart)
        }
        var environment = environment(for: held.deploy)
        if pool.isSandboxed, record.request.workloadType == .native {
            do {
                environment = try await Self.openServers(
                    in: environment, sandbox: agent.sandbox, policy: sandboxServers)
            } catch {
                return await failStart(
                    id, .unavailable, "cannot let the workload reach its NATS servers: \(error)", restart: restart)
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
        do { response = try await agent.link.deploy(request, timeout: .seconds(10)) } catch {
            response = AgentResponse(ok: false, message: "the agent did not answer the deploy: \(error)")
        }
        guard response.ok else {
            return await failStart(
                id, .invalidRequest, response.message ?? "the agent refused the workload", restart: restart)
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
            if restart {
                return await failStart(
                    id, .unavailable, "cannot subscribe to the trigger subjects: \(error)", restart: true)
            }
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
        // The deployer is told it runs (below, with no await before): from now on a shutdown keeps its record.
        state.confirmed(id)
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

    /// A start that failed: the workload is forgotten (its record too) and its agent destroyed. A restart that
    /// failed is another failed run instead: tried again after its backoff while the restart policy allows.
    private func failStart(
        _ id: String, _ code: NexError.Code, _ reason: String, restart: Bool = false
    ) async -> Result<RunResponse, NexError> {
        // A stop under way (the node's shutdown keeps the record) does its own clean-up.
        if case .stopping = state.entries[id]?.status { return .failure(NexError(code, reason)) }
        if restart, let retry = state.restartFailed(id) {
            // The failed run's agent and triggers are taken now, so a stop meanwhile does not find them.
            let held = resources[id]
            resources[id]?.agent = nil
            resources[id]?.triggers = []
            // Recorded before anything else: a stop arriving during this write queues its delete after it.
            let recorded = await commit(retry.changes)
            for sub in held?.triggers ?? [] {
                do { try await sub.unsubscribe() } catch {
                    // The connection is gone: so is the subscription, and nothing reaches the old agent.
                    logger.debug(
                        "a failed restart's trigger could not be unsubscribed", metadata: ["error": "\(error)"])
                }
            }
            if let agent = held?.agent { await destroy(agent) }
            guard recorded else {
                // Not recorded, so not run: the node would not run it after its own restart either.
                await cleanUp(id, forget: true, removeArtifact: true)
                return .failure(NexError(code, reason + " (not tried again: the workload journal cannot be written)"))
            }
            // A stop or shutdown during the awaits above took it: nothing to schedule.
            guard state.entries[id]?.status == .restarting else { return .failure(NexError(code, reason)) }
            scheduleRestart(id, after: retry.delay)
            logger.warning(
                "essential workload could not restart; trying again",
                metadata: ["nex.workload_id": "\(id)", "reason": "\(reason)", "delay": "\(retry.delay)"])
            return .failure(NexError(code, reason + " (tried again after \(retry.delay))", isTransient: true))
        }
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
        if let agentID = entry.status.agent, let link = resources[id]?.agent?.link {
            do { _ = try await link.stop(timeout: .seconds(8)) } catch {
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
        agent.link.close()
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
        if case .restart(let old, let new, _) = outcome, var held = resources[old.id] {
            // Before any await: the new run keeps the checked deploy and the artifact copy.
            held.triggers = []
            held.agent = nil
            resources[new.id] = held
        }
        // A restart is carried out only once it is recorded: a workload the node would not run after its own
        // restart does not run now either.
        if !(await commit(changes)), case .restart(let old, let new, _) = outcome {
            await cleanUp(old.id, forget: true, removeArtifact: false)
            await cleanUp(new.id, forget: true, removeArtifact: true)
            // The old run left the state with its exit: its record (if the journal still has it) goes by name.
            if old.persisted { await commit([.delete(id: old.id)]) }
            await announceUndeployed(
                old.record, code: report.code,
                message: report.message + " (not restarted: the workload journal cannot be written)")
            return
        }
        if case .restart(_, let new, let delay) = outcome { scheduleRestart(new.id, after: delay) }
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

    /// Starts `id` again after `delay`, on a timer a shutdown cancels.
    private func scheduleRestart(_ id: String, after delay: Duration) {
        restarts[id] = tasks.spawn {
            do { try await Task.sleep(for: delay) } catch { return }
            await self.restartDue(id)
        }
    }

    private func restartDue(_ id: String) async {
        restarts[id] = nil
        guard !Task.isCancelled, !closed else { return }
        guard !isLameDuck() else {
            await cleanUp(id, forget: true, removeArtifact: true)
            return
        }
        guard state.restartDue(id) else { return }
        if case .failure(let refusal) = await launch(id, restart: true), !refusal.isTransient {
            logger.error(
                "essential workload could not restart", metadata: ["nex.workload_id": "\(id)", "error": "\(refusal)"])
        }
    }

    /// Forwards a line the workload logged (it came on the agent's link) to the workload's log subject.
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

    // MARK: Health

    /// Sends a heartbeat to every agent that runs a workload; three missed in a row end the workload.
    func checkHealth(timeout: Duration) async {
        for entry in state.workloads() {
            guard case .running(let agentID) = entry.status, let link = resources[entry.id]?.agent?.link else {
                continue
            }
            let ok: Bool
            do {
                _ = try await link.heartbeat(timeout: timeout)
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
