import Foundation
import Logging
import NATS
import NexAgentLink
import NexModels
import NexProcess
import NexSandbox
import Synchronization

/// Owns one workload's whole life, from its record to its end: it starts it on a warm agent, pings its agent,
/// restarts it with backoff when it is essential, stops it, and keeps its journal record. A
/// ``WorkloadLifecycle`` value decides every step; this class only carries the steps out, one at a time, in
/// one task (``run()``), so nothing about a workload ever happens in two places at once.
///
/// Others talk to it through events (``stop(_:)``, ``exited(_:)``, ``checkHealth()``) and read its
/// ``snapshot``; the deployer waits for ``deployAnswer()``.
final class WorkloadSupervisor: Sendable {
    /// What the rest of the node reads of the workload (listings, routing by agent, metrics).
    struct Snapshot: Sendable {
        var record: WorkloadRecord
        var status: WorkloadLifecycle.Status
        var since: Date
        var healthy: Bool
        /// Counts as on the node (every status but stopping).
        var isPresent: Bool
        /// The sandbox of its agent, while it has one.
        var sandbox: (any AgentSandbox)?
        /// The public key of the account that deployed it (the one that may stop it).
        var issuer: String

        var id: String { record.id }
    }

    /// The parts of the node a workload's life touches, the same for every supervisor.
    struct Context: Sendable {
        let config: NodeConfiguration
        let pool: AgentPool
        let events: EventPublisher
        let journal: WorkloadJournal?
        let hostServices: HostServiceConnections
        let sandboxServers: SandboxServerPolicy
        let logger: Logger
        /// Subscribes functions' triggers and runs them.
        let triggers: WorkloadManager
        /// Pulls and keeps container images (nil when the node has no image cache).
        let images: ImageService?
        /// Whether an essential workload may still restart (not in lame duck, the node not stopping).
        let restartsAllowed: @Sendable () -> Bool
    }

    /// The deploy as checked (its environment opened, kept in memory only).
    let deploy: ValidatedDeploy
    /// The workload's copy of its artifact, shared by its runs (empty for an image).
    let artifactPath: String
    /// A container image's workload: what its agent runs, in the image's root.
    let image: RunnableImage?
    private let context: Context
    private let inputs: AsyncStream<Input>
    private let input: AsyncStream<Input>.Continuation
    private let shared: Mutex<Shared>
    private let initial: WorkloadLifecycle

    /// What reaches the run loop: an event, with what an in-flight task hands over.
    private struct Input: Sendable {
        var event: WorkloadLifecycle.Event
        /// The in-flight task that ended with this event.
        var task: Int?
        /// The agent it took.
        var agent: Agent?
    }

    private struct Shared {
        var snapshot: Snapshot
        var deployAnswer: Result<RunResponse, NexError>?
        var deployWaiter: CheckedContinuation<Result<RunResponse, NexError>, Never>?
        /// Set when the run loop ended: whether every journal write of the ending succeeded.
        var endingRecorded: Bool?
        var stopWaiters: [CheckedContinuation<Bool, Never>] = []
        /// A stop that removes the record, handed to the lifecycle once more before the loop ends.
        var forgetRequested: WorkloadLifecycle.Stop?
    }

    init(
        record: WorkloadRecord, deploy: ValidatedDeploy, artifactPath: String, image: RunnableImage? = nil,
        persisted: Bool, alreadyRecorded: Bool, context: Context
    ) {
        self.deploy = deploy
        self.artifactPath = artifactPath
        self.image = image
        self.context = context
        let lifecycle = WorkloadLifecycle(
            record: record, persisted: persisted, alreadyRecorded: alreadyRecorded,
            policy: context.config.restartPolicy)
        self.initial = lifecycle
        let (stream, continuation) = AsyncStream.makeStream(of: Input.self)
        inputs = stream
        input = continuation
        shared = Mutex(
            Shared(
                snapshot: Snapshot(
                    record: record, status: lifecycle.status, since: lifecycle.since, healthy: true, isPresent: true,
                    sandbox: nil, issuer: deploy.claims.issuer)))
    }

    var snapshot: Snapshot { shared.withLock { $0.snapshot } }

    // MARK: What others ask

    /// The answer its deployer gets: it runs, or why it does not.
    func deployAnswer() async -> Result<RunResponse, NexError> {
        await withCheckedContinuation { continuation in
            let ready = shared.withLock { s -> Result<RunResponse, NexError>? in
                if let answer = s.deployAnswer { return answer }
                s.deployWaiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Stops the workload and waits until it is gone. False when a journal write of its ending failed (a
    /// forgotten workload whose record stayed would start again with the node).
    func stop(_ stop: WorkloadLifecycle.Stop) async -> Bool {
        requestStop(stop)
        return await ended()
    }

    /// Asks for a stop without waiting for it (see ``ended()``).
    func requestStop(_ stop: WorkloadLifecycle.Stop) {
        // Remembered too: a stop queued behind an ending that finishes without reading it still applies.
        if stop.forget { shared.withLock { $0.forgetRequested = stop } }
        input.yield(Input(event: .stopRequested(stop)))
    }

    /// Waits until the workload is gone; whether every journal write of its ending succeeded.
    func ended() async -> Bool {
        await withCheckedContinuation { continuation in
            let done = shared.withLock { s -> Bool? in
                if let recorded = s.endingRecorded { return recorded }
                s.stopWaiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// The workload's process ended by itself (code -1: its agent died).
    func exited(_ report: WorkloadExited) {
        input.yield(Input(event: .exited(report, newID: nil)))
    }

    /// Pings the workload's agent (unless a ping is still out); three missed in a row end the run.
    func checkHealth() {
        input.yield(Input(event: .healthCheck))
    }

    /// `event` with the id an essential restart would run under, when restarts are still allowed: decided
    /// as the event is handled, so lame duck or a shutdown that began meanwhile restarts nothing.
    private func stamped(_ event: WorkloadLifecycle.Event) -> WorkloadLifecycle.Event {
        func restartID() -> String? { context.restartsAllowed() ? UUID().uuidString.lowercased() : nil }
        switch event {
        case .exited(let report, _): return .exited(report, newID: restartID())
        case .pinged(let agent, let ok, _): return .pinged(agent: agent, ok: ok, newID: restartID())
        default: return event
        }
    }

    // MARK: The run loop

    /// Runs the workload until it is gone. Cancelling it stops the workload as a node shutdown does (its
    /// record stays when its deployer was told it runs).
    func run() async {
        // The steps run in a task of their own: a cancellation becomes a stop, so they still end cleanly.
        let steps = Task { await self.runSteps() }
        await withTaskCancellationHandler {
            await steps.value
        } onCancel: {
            input.yield(Input(event: .stopRequested(.init(forget: false, code: 0, message: "node stopped"))))
        }
    }

    /// What one run of the loop holds: owned by ``runSteps()`` alone.
    private struct Held {
        var agents: [String: Agent] = [:]
        var triggers: [NATSSubscription] = []
        /// Its stream, key-value and object-store triggers.
        var consumers: [JetStreamTriggerRunner] = []
        var inFlight: [Int: Task<Void, Never>] = [:]
        var nextTask = 0
    }

    private func runSteps() async {
        var lifecycle = initial
        var held = Held()
        var iterator = inputs.makeAsyncIterator()
        var action = lifecycle.handle(.begin)
        publish(lifecycle, held)
        while true {
            let event: WorkloadLifecycle.Event
            if action == .finish {
                // A stop that forgets may wait unread behind the ending (a shutdown's, which kept the record).
                guard
                    let late = shared.withLock({ s in
                        defer { s.forgetRequested = nil }
                        return s.forgetRequested
                    })
                else { break }
                event = .stopRequested(late)
            } else if action == .wait {
                // The stream ends only when the loop does: `nil` cannot come while it waits.
                guard let next = await iterator.next() else { break }
                if let task = next.task { held.inFlight[task] = nil }
                if let agent = next.agent { held.agents[agent.id] = agent }
                event = stamped(next.event)
            } else {
                event = await perform(action, lifecycle: lifecycle, held: &held)
            }
            action = lifecycle.handle(event)
            publish(lifecycle, held)
        }
        input.finish()
        for task in held.inFlight.values { await task.value }
        // Every path answers the deployer before it ends; this only keeps a deployer from waiting forever.
        answer(.failure(NexError(.unavailable, "the workload ended before it started")))
        let waiters = shared.withLock { s in
            s.endingRecorded = lifecycle.endingRecorded
            defer { s.stopWaiters = [] }
            return s.stopWaiters
        }
        for waiter in waiters { waiter.resume(returning: lifecycle.endingRecorded) }
    }

    private func publish(_ lifecycle: WorkloadLifecycle, _ held: Held) {
        let status = lifecycle.status
        let sandbox = status.agent.flatMap { held.agents[$0]?.sandbox }
        shared.withLock {
            $0.snapshot = Snapshot(
                record: lifecycle.record, status: status, since: lifecycle.since, healthy: lifecycle.healthy,
                isPresent: lifecycle.isPresent, sandbox: sandbox, issuer: deploy.claims.issuer)
        }
    }

    /// Carries out one step; its outcome is the next event (``WorkloadLifecycle/Event/done`` for steps
    /// without one). Work in flight starts here and reports through the input stream.
    private func perform(
        _ action: WorkloadLifecycle.Action, lifecycle: WorkloadLifecycle, held: inout Held
    ) async -> WorkloadLifecycle.Event {
        let record = lifecycle.record
        switch action {
        case .commit(let changes):
            return .committed(ok: await commit(changes))
        case .takeAgent:
            let pool = context.pool
            let timeout = Duration.milliseconds(context.config.agentHandshakeTimeoutMs)
            let imageRoot = image?.root
            startInFlight(&held) {
                do {
                    // An image runs in an agent started in its root; anything else on a warm agent.
                    let agent =
                        if let imageRoot { try await pool.launch(imageRoot: imageRoot) } else {
                            try await pool.take(timeout: timeout)
                        }
                    return Input(event: .agentTaken(agent: agent.id), agent: agent)
                } catch {
                    return Input(event: .noAgent(reason: "\(error)"))
                }
            }
        case .deploy(let agentID):
            guard let agent = held.agents[agentID] else {
                return .deployFailed(agent: agentID, code: .unavailable, reason: "the agent is gone")
            }
            startInFlight(&held) { Input(event: await self.handOver(record, to: agent)) }
        case .subscribe(let agentID):
            guard let agent = held.agents[agentID] else { return .subscribeFailed(reason: "the agent is gone") }
            do {
                held.triggers = try await subscribeTriggers(record, agent: agent)
                held.consumers = try await startConsumers(record, agent: agent)
                return .subscribed
            } catch {
                return .subscribeFailed(reason: "\(error)")
            }
        case .confirm(let answerDeployer):
            await announceDeployed(record, agent: lifecycle.status.agent ?? "")
            if answerDeployer {
                answer(
                    .success(RunResponse(id: record.id, issuer: deploy.claims.issuer, name: record.name, started: true))
                )
            }
        case .answer(let refusal):
            answer(.failure(refusal))
        case .tearDown(let tearDown):
            await self.tearDown(tearDown, held: &held)
        case .destroyStray(let agentID):
            if let agent = held.agents.removeValue(forKey: agentID) { await destroy(agent) }
        case .announceEnded(let ended, let code, let message):
            await announceUndeployed(ended, code: code, message: message)
        case .warn(let text):
            context.logger.warning(
                "\(text)", metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)"])
        case .ping(let agentID):
            guard let link = held.agents[agentID]?.link else {
                return stamped(.pinged(agent: agentID, ok: false, newID: nil))
            }
            let timeout = Duration.milliseconds(context.config.agentPingTimeoutMs)
            startInFlight(&held) {
                let ok: Bool
                do {
                    _ = try await link.heartbeat(timeout: timeout)
                    ok = true
                } catch { ok = false }
                return Input(event: .pinged(agent: agentID, ok: ok, newID: nil))
            }
        case .backOff(let delay):
            startInFlight(&held) {
                // Cut short by a stop: the event still comes, and finds the workload stopping.
                do { try await Task.sleep(for: delay) } catch {}
                return Input(event: .backoffEnded)
            }
        case .wait, .finish:
            break
        }
        return .done
    }

    /// Starts work whose outcome comes back through the input stream (tagged, so the task is forgotten then).
    private func startInFlight(_ held: inout Held, _ work: @escaping @Sendable () async -> Input) {
        let id = held.nextTask
        held.nextTask += 1
        let input = self.input
        held.inFlight[id] = Task {
            var result = await work()
            result.task = id
            input.yield(result)
        }
    }

    private func answer(_ result: Result<RunResponse, NexError>) {
        let waiter = shared.withLock { s -> CheckedContinuation<Result<RunResponse, NexError>, Never>? in
            guard s.deployAnswer == nil else { return nil }
            s.deployAnswer = result
            defer { s.deployWaiter = nil }
            return s.deployWaiter
        }
        waiter?.resume(returning: result)
    }

    // MARK: Steps

    /// Writes journal changes; false (logged) when they could not be written.
    private func commit(_ changes: [JournalChange]) async -> Bool {
        guard let journal = context.journal, !changes.isEmpty else { return true }
        do {
            try await journal.commit(changes)
            return true
        } catch {
            context.logger.error(
                "cannot update the workload journal",
                metadata: ["error": "\(error)", "changes": "\(changes.count)", "path": "\(journal.directory)"])
            return false
        }
    }

    /// Gives the artifact and the deploy to `agent` and waits for its answer.
    private func handOver(_ record: WorkloadRecord, to agent: Agent) async -> WorkloadLifecycle.Event {
        let config = context.config
        let inside = agent.workDirectory + "/workload"
        let artifactPath = self.artifactPath
        if image == nil {
            do {
                try await BlockingIO.run {
                    if link(artifactPath, inside) != 0 {
                        try FileManager.default.copyItem(atPath: artifactPath, toPath: inside)
                    }
                }
            } catch {
                return .deployFailed(
                    agent: agent.id, code: .storage, reason: "cannot give the artifact to the agent: \(error)")
            }
        }
        var environment = WorkloadManager.environment(for: deploy, config: config)
        if let image {
            // The deploy's variables over the image's (upper-cased, as the runner does for any service).
            var merged = image.environment
            for (key, value) in environment { merged[key.uppercased()] = value }
            environment = merged
        }
        if context.pool.isSandboxed, record.request.workloadType == .native {
            do {
                environment = try await WorkloadManager.openServers(
                    in: environment, sandbox: agent.sandbox, policy: context.sandboxServers)
            } catch {
                return .deployFailed(
                    agent: agent.id, code: .unavailable,
                    reason: "cannot let the workload reach its NATS servers: \(error)")
            }
        }
        var request = AgentDeployRequest(
            workloadID: record.id, workloadName: record.name, namespace: record.namespace, type: record.type,
            argv: record.request.argv ?? [], environment: environment, essential: record.essential,
            artifactPath: agent.sandbox.workDirectoryInside + "/workload", totalBytes: record.totalBytes,
            triggerSubjects: record.request.triggerSubjects ?? [], limits: config.functionLimits,
            maxConcurrency: concurrency(record))
        request.sourceName = record.request.plainSourceName
        if let image {
            request.artifactPath = image.executable
            request.argv = image.arguments
            request.workingDirectory = image.workingDirectory
        }
        let response: AgentResponse
        do { response = try await agent.link.deploy(request, timeout: .seconds(10)) } catch {
            // No answer (the agent died or hung) may pass with another agent; a refusal would not.
            return .deployFailed(
                agent: agent.id, code: .unavailable, reason: "the agent did not answer the deploy: \(error)")
        }
        guard response.ok else {
            return .deployFailed(
                agent: agent.id, code: .invalidRequest, reason: response.message ?? "the agent refused the workload")
        }
        return .deployed(agent: agent.id)
    }

    private func concurrency(_ record: WorkloadRecord) -> Int {
        record.request.maxConcurrency ?? ProcessInfo.processInfo.activeProcessorCount
    }

    /// A function's trigger subscriptions (none for a service).
    private func subscribeTriggers(_ record: WorkloadRecord, agent: Agent) async throws -> [NATSSubscription] {
        guard record.request.workloadType?.isFunction == true else { return [] }
        let target = FunctionTarget(
            id: record.id, name: record.name, namespace: record.namespace, link: agent.link,
            admission: TriggerAdmission(
                running: concurrency(record), queued: context.config.functionLimits.queueDepth))
        let subjects =
            (record.request.triggerSubjects ?? []).map { SubjectTrigger(subject: $0) }
            + (record.request.triggers ?? []).compactMap { trigger -> SubjectTrigger? in
                if case .subject(let t) = trigger { return t }
                return nil
            }
        return try await context.triggers.subscribeTriggers(of: target, subjects: subjects)
    }

    /// A function's JetStream triggers, each pulling from the consumer its copies share (none for a service).
    /// A trigger that cannot start stops those started before it.
    private func startConsumers(_ record: WorkloadRecord, agent: Agent) async throws -> [JetStreamTriggerRunner] {
        guard record.request.workloadType?.isFunction == true else { return [] }
        let target = FunctionTarget(
            id: record.id, name: record.name, namespace: record.namespace, link: agent.link,
            admission: TriggerAdmission(running: concurrency(record), queued: context.config.functionLimits.queueDepth))
        var started: [JetStreamTriggerRunner] = []
        for (index, trigger) in (record.request.triggers ?? []).enumerated() {
            guard let plan = JetStreamTriggerPlan(trigger, index: index, namespace: record.namespace, name: record.name)
            else { continue }
            do {
                started.append(
                    try await JetStreamTriggerRunner.start(
                        plan, workload: target, client: context.events.client,
                        policy: context.config.workloadSubjects, metrics: context.triggers.metrics,
                        logger: context.logger))
            } catch {
                for runner in started { await runner.drain() }
                throw error
            }
        }
        return started
    }

    /// Releases a run: what is in flight, the agent (asked to stop the workload first when `stopAgent`), the
    /// triggers and host-service connections, and the artifact when the workload is gone for good. JetStream
    /// triggers stop pulling first and let the messages in flight finish while the agent still runs them.
    private func tearDown(_ tearDown: WorkloadLifecycle.TearDown, held: inout Held) async {
        let consumers = held.consumers
        held.consumers = []
        // All at once: a trigger still pulling while another drains would take messages it cannot finish.
        await withTaskGroup(of: Void.self) { group in
            for runner in consumers { group.addTask { await runner.drain() } }
        }
        for task in held.inFlight.values { task.cancel() }
        let agent = tearDown.agent.flatMap { held.agents.removeValue(forKey: $0) }
        if tearDown.stopAgent, let agent {
            do { _ = try await agent.link.stop(timeout: .seconds(8)) } catch {
                // The sandbox is destroyed next either way; the workload just had no chance to stop cleanly.
                context.logger.warning(
                    "the agent did not confirm the stop; destroying its sandbox",
                    metadata: [
                        "nex.workload_id": "\(tearDown.workloadID)", "nex.agent": "\(agent.id)", "error": "\(error)",
                    ])
            }
        }
        let triggers = held.triggers
        held.triggers = []
        for subscription in triggers {
            do { try await subscription.unsubscribe() } catch {
                // The connection is gone, and the subscription with it: nothing reaches the old agent.
                context.logger.debug("a trigger could not be unsubscribed", metadata: ["error": "\(error)"])
            }
        }
        await context.hostServices.release(workloadID: tearDown.workloadID)
        if let agent { await destroy(agent) }
        if tearDown.removeArtifact {
            if let image {
                await context.images?.release(image.manifestDigest, workloadID: tearDown.workloadID)
            } else {
                await BlockingIO.remove(artifactPath, what: "a workload's artifact", logger: context.logger)
            }
        }
    }

    private func destroy(_ agent: Agent) async {
        await agent.sandbox.destroy(grace: .seconds(6))
        agent.link.close()
        await BlockingIO.remove(agent.workDirectory, what: "an agent's directory", logger: context.logger)
    }

    private func announceDeployed(_ record: WorkloadRecord, agent: String) async {
        context.logger.info(
            "workload deployed",
            metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)", "nex.agent": "\(agent)"])
        await context.events.publish(
            NexEventType.workloadDeployed,
            WorkloadEvent(
                code: 0, message: "workload deployed", workloadID: record.id, workloadName: record.name,
                essential: record.essential, totalBytes: record.totalBytes), namespace: record.namespace)
    }

    private func announceUndeployed(_ record: WorkloadRecord, code: Int, message: String) async {
        context.logger.info(
            "workload undeployed",
            metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)", "reason": "\(message)"])
        await context.events.publish(
            NexEventType.workloadUndeployed,
            WorkloadEvent(
                code: code, message: message, workloadID: record.id, workloadName: record.name,
                essential: record.essential, totalBytes: record.totalBytes), namespace: record.namespace)
    }
}
