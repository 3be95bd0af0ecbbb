import Foundation
import Logging
import NATS
import NKeys
import NexAgentLink
import NexModels
import NexProcess
import NexSandbox
import Synchronization

/// What a function's trigger needs to reach its agent (captured by the trigger subscriptions).
struct FunctionTarget: Sendable {
    var id: String
    var name: String
    var namespace: String
    var link: AgentLinkClient
    /// How many of its triggers may be in flight at once.
    var admission: TriggerAdmission
}

/// Keeps the node's workloads: one ``WorkloadSupervisor`` each, which owns that workload's whole life. The
/// manager admits deploys (duplicates and limits, counting deploys still downloading), keeps the map of
/// supervisors, and routes what concerns a workload to its supervisor: an issuer's stop, an agent's exit, log
/// lines and host calls, health checks, and the node's shutdown.
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
    /// The image cache and registry clients; nil when the cache could not be made (image deploys are refused).
    let images: Result<ImageService, NexError>
    /// The manager's tasks (supervisors, host calls, triggers): cancelled and awaited by
    /// ``stopAll(reason:forget:)``.
    nonisolated let tasks = OwnedTasks()

    /// Every workload's supervisor (those ending too), by the order they came.
    private var supervisors: [Int: WorkloadSupervisor] = [:]
    private var nextSupervisor = 0
    /// Places held for deploys being checked and downloaded.
    private var reservations = DeployReservations()
    private var closed = false
    /// The node is stopping: what supervisors read before they restart a workload.
    private let stopping = Mutex(false)
    /// A lame-duck drain began: every stop from now on removes its workload's record.
    private var draining = false

    init(
        config: NodeConfiguration, pool: AgentPool, events: EventPublisher,
        journal: WorkloadJournal?, metrics: NodeMetrics, tracing: NodeTracer, logger: Logger,
        images: Result<ImageService, NexError>, isLameDuck: @escaping @Sendable () -> Bool
    ) {
        self.images = images
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
    }

    /// Workloads on the node, oldest first.
    private var present: [WorkloadSupervisor.Snapshot] {
        supervisors.values.map(\.snapshot).filter(\.isPresent).sorted { ($0.since, $0.id) < ($1.since, $1.id) }
    }

    /// Workloads on the node.
    var count: Int { present.count }

    /// Whether a lame-duck drain began (every record goes).
    var isDraining: Bool { draining }

    /// Whether the node is stopping: nothing starts any more.
    var isClosed: Bool { closed }

    /// The workloads of `namespace` (all when nil), oldest first.
    func all(in namespace: String? = nil) -> [WorkloadSupervisor.Snapshot] {
        present.filter { namespace == nil || $0.record.namespace == namespace }
    }

    /// The workload an agent runs (or is ending).
    func workload(agent: String) -> WorkloadSupervisor.Snapshot? { supervisor(agent: agent)?.snapshot }

    private func supervisor(agent: String) -> WorkloadSupervisor? {
        supervisors.values.first { $0.snapshot.status.agent == agent }
    }

    /// What a metrics scrape reports of the workloads: how many of each namespace and type, which are here,
    /// their bytes, and the sandbox of each that has an agent (read outside the actor: usage is file reads).
    func metricsLevels() -> (
        workloads: [WorkloadKind: Int], present: Set<WorkloadName>, deployedBytes: Int,
        sandboxes: [(WorkloadName, any AgentSandbox)]
    ) {
        var kinds: [WorkloadKind: Int] = [:]
        var names: Set<WorkloadName> = []
        var sandboxes: [(WorkloadName, any AgentSandbox)] = []
        var bytes = 0
        for workload in present {
            kinds[WorkloadKind(namespace: workload.record.namespace, type: workload.record.type), default: 0] += 1
            let name = WorkloadName(namespace: workload.record.namespace, workload: workload.record.name)
            names.insert(name)
            bytes += workload.record.totalBytes
            if let sandbox = workload.sandbox { sandboxes.append((name, sandbox)) }
        }
        return (kinds, names, bytes, sandboxes)
    }

    // MARK: Deploy

    /// The duplicate and count checks, made before the artifact is downloaded; on success a place is held
    /// until the workload is accepted by ``start(_:record:reservation:artifactPath:persist:alreadyRecorded:)``
    /// or given up with ``release(_:)``.
    ///
    /// `replacing`: the id of a workload of this name and namespace, deployed by `issuer`, that the deployer
    /// stops once this one runs; it, and every other copy of that name by `issuer`, is not a duplicate of this
    /// deploy (another issuer's copy never is replaced).
    func reserve(
        name: String, namespace: String, replacing: String? = nil, issuer: String? = nil
    ) -> Result<Reservation, NexError> {
        if closed { return .failure(NexError(.unavailable, "the node is shutting down: deploy to another node")) }
        let workloads = present
        // The deployer replaces the copy it names, and with it every other copy of that name it deployed here.
        let namesOwnCopy = supervisors.values.contains {
            $0.snapshot.isPresent && $0.snapshot.id == replacing && $0.snapshot.record.namespace == namespace
                && $0.snapshot.record.name == name && $0.deploy.claims.issuer == issuer
        }
        let replaced = Set(
            namesOwnCopy
                ? supervisors.values.filter {
                    $0.snapshot.record.namespace == namespace && $0.snapshot.record.name == name
                        && $0.deploy.claims.issuer == issuer
                }.map(\.snapshot.id) : [])
        return reservations.reserve(
            name: name, namespace: namespace,
            present: workloads.filter { !replaced.contains($0.id) }.map(\.record.key), counted: workloads.count,
            allowDuplicates: config.allowDuplicateWorkloads, maxWorkloads: config.nodeLimits.maxWorkloads)
    }

    /// Gives up a place (a deploy that failed before it was accepted; nothing once it was accepted).
    func release(_ reservation: Reservation) { reservations.release(reservation) }

    /// Accepts a verified deploy and hands it to a supervisor of its own, which records it first (when
    /// `persist` and not `alreadyRecorded`) and runs it on a warm agent. Returns what the deployer is told.
    func start(
        _ deploy: ValidatedDeploy, record: WorkloadRecord, reservation: Reservation, artifactPath: String,
        image: RunnableImage? = nil, persist: Bool, alreadyRecorded: Bool = false
    ) async -> Result<RunResponse, NexError> {
        defer { reservations.release(reservation) }
        // Reading the executable's header is file work: done before the workloads are looked at. An image
        // brings its own libraries.
        let staticProblem =
            pool.isSandboxed && record.request.workloadType == .native && image == nil
            ? await Self.staticExecutableProblem(at: artifactPath) : nil
        if closed {
            return .failure(
                NexError(.unavailable, "the node is shutting down: deploy to another node", isTransient: !draining))
        }
        if let refusal = admissionProblem(record, staticProblem: staticProblem) { return .failure(refusal) }
        let supervisor = WorkloadSupervisor(
            record: record, deploy: deploy, artifactPath: artifactPath, image: image, persisted: persist,
            alreadyRecorded: alreadyRecorded, context: supervisorContext)
        let key = nextSupervisor
        nextSupervisor += 1
        // The workload now counts itself: its place ends.
        supervisors[key] = supervisor
        reservations.release(reservation)
        let started = tasks.spawn {
            await supervisor.run()
            await self.supervisorEnded(key)
        }
        guard started != nil else {
            supervisors[key] = nil
            return .failure(NexError(.unavailable, "the node is shutting down: deploy to another node"))
        }
        return await supervisor.deployAnswer()
    }

    /// What refuses a workload on this node today, before it is accepted: `max_total_bytes`, and a sandbox
    /// that runs static executables only.
    private func admissionProblem(_ record: WorkloadRecord, staticProblem: String?) -> NexError? {
        let total = present.map(\.record.totalBytes).reduce(0, +)
        if let max = config.nodeLimits.maxTotalBytes, total + record.totalBytes > max {
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

    /// Why a sandbox cannot run the executable at `path` (nil: it is static), read off the cooperative pool.
    private static func staticExecutableProblem(at path: String) async -> String? {
        await BlockingIO.run { StaticExecutable.problem(at: path) }
    }

    private var supervisorContext: WorkloadSupervisor.Context {
        let isLameDuck = self.isLameDuck
        // try?: without a cache no image workload was ever accepted, so none has a pin to give back.
        let images = try? self.images.get()
        return WorkloadSupervisor.Context(
            config: config, pool: pool, events: events, journal: journal, hostServices: hostServices,
            sandboxServers: sandboxServers, logger: logger, triggers: self, images: images,
            restartsAllowed: { !isLameDuck() && !self.stopping.withLock { $0 } })
    }

    private func supervisorEnded(_ key: Int) { supervisors[key] = nil }

    // MARK: Stop

    /// Stops a workload for the issuer that deployed it. A stop from another namespace, or for an unknown id,
    /// is "no such workload" (ids cannot be probed).
    func stop(_ request: StopRequest, namespace: String) async -> Result<StopResponse, NexError> {
        guard
            let supervisor = supervisors.values.first(where: {
                let workload = $0.snapshot
                return workload.isPresent && workload.record.namespace == namespace
                    && workload.id == request.workloadID
            })
        else {
            return .failure(NexError(.notFound, "no such workload"))
        }
        let deploy = supervisor.deploy
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
        let id = request.workloadID
        if !claims.subject.isEmpty, claims.subject != id {
            return .failure(NexError(.unauthorized, "stop refused: the token is for workload \(claims.subject)"))
        }
        guard await supervisor.stop(.init(forget: true, code: 0, message: "stopped by its issuer")) else {
            return .failure(
                NexError(
                    .storage,
                    "workload \(id) stopped, but its record could not be removed: it would start again when "
                        + "the node restarts (check the node's resource directory, then stop it again after a restart)")
            )
        }
        return .success(StopResponse(id: id, issuer: claims.issuer, stopped: true))
    }

    /// Stops every workload. `forget` (a lame-duck drain) removes their records; a node shutdown keeps them
    /// so the node starts them again. No workload starts or restarts afterwards.
    func stopAll(reason: String, forget: Bool) async {
        // Nothing starts afterwards: a drain ends with the node's exit. Once drained, a later stop (the
        // shutdown that follows, or one racing the drain) forgets too.
        closed = true
        stopping.withLock { $0 = true }
        if forget { draining = true }
        let all = Array(supervisors.values)
        // Asked of every workload before any is awaited: a shutdown arriving during a drain finds the drain's
        // stops first in each queue.
        for supervisor in all { supervisor.requestStop(.init(forget: draining, code: 0, message: reason)) }
        for supervisor in all { _ = await supervisor.ended() }
        // Host calls first: one still opening a connection would store it after closeAll.
        await tasks.shutdown()
        await hostServices.closeAll()
    }

    // MARK: Agents' reports

    /// The workload's process ended by itself.
    func exited(agentID: String, _ report: WorkloadExited) {
        supervisor(agent: agentID)?.exited(report)
    }

    /// An agent process died.
    func agentDied(_ agent: Agent, reason: String) {
        guard let supervisor = supervisor(agent: agent.id) else { return }
        supervisor.exited(WorkloadExited(workloadID: supervisor.snapshot.id, code: -1, message: reason))
    }

    /// Forwards a line the workload logged (it came on the agent's link) to the workload's log subject.
    func log(agentID: String, level: Int, text: [UInt8]) async {
        guard let workload = workload(agent: agentID) else { return }
        let line = LogEntry(text: String(decoding: text, as: UTF8.self), level: level, id: workload.id)
        let body: [UInt8]
        do { body = Array(try JSONEncoder().encode(line)) } catch {
            logger.warning("a function's log line cannot be encoded", metadata: ["error": "\(error)"])
            return
        }
        await events.log(
            body, namespace: workload.record.namespace, workloadName: workload.record.name, workloadID: workload.id)
    }

    /// Asks every workload's supervisor to ping its agent; three missed in a row end the run.
    func checkHealth() {
        for supervisor in supervisors.values { supervisor.checkHealth() }
    }
}
