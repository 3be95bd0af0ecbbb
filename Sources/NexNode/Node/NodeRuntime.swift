import Foundation
import Logging
import NATS
import NexModels
import NexProcess
import NexSandbox
import Synchronization

/// What a node needs to run workloads: its internal NATS server, the warm pool and the workload manager.
/// A node without one (no `nats-server` or `nex-agent` found) still answers the control API and refuses
/// deploys with the reason.
struct NodeRuntime: Sendable {
    let internalNATS: InternalNATS
    let pool: AgentPool
    let manager: WorkloadManager

    /// Where to find `nex-agent`: `agent_path`, else beside the running executable.
    static func agentExecutable(_ config: NodeConfiguration) -> String {
        // Absolute: agents start in their own work directory.
        URL(fileURLWithPath: config.agentPath ?? (Executable.directory + "/nex-agent")).standardizedFileURL.path
    }

    /// The driver the configuration asks for: `none` only with `no_sandbox: true`; otherwise the sandbox,
    /// or the reason there is none. A sandboxed node never falls back to running workloads unsandboxed.
    static func driver(_ config: NodeConfiguration, agent: String, home: String, logger: Logger) async throws
        -> any SandboxDriver
    {
        let agentOutput: @Sendable (String, String) -> Void = { agent, line in
            logger.notice("\(line)", metadata: ["nex.agent": "\(agent)"])
        }
        if config.noSandbox { return ProcessDriver(agentOutput: agentOutput) }
        switch config.sandbox {
        case .auto, .namespace:
            guard let bubblewrap = NamespaceDriver.findBubblewrap() else {
                throw NexError(
                    .unsupported,
                    "the namespace sandbox needs bubblewrap: run `nex node preflight` (or set \"no_sandbox\": true "
                        + "to run workloads unsandboxed)")
            }
            guard let cgroups = Cgroups.detect() else {
                throw NexError(
                    .unsupported,
                    "the namespace sandbox needs cgroups with the memory, cpu and pids controllers for "
                        + "machine_template limits: none found under /sys/fs/cgroup")
            }
            if case .failure(let problem) = await cgroups.check() {
                throw NexError(
                    .unsupported,
                    "the namespace sandbox cannot make cgroups for machine_template limits (run the node as root): "
                        + problem.description)
            }
            let files = try await NamespaceDriver.runtimeFiles(of: agent)
            return NamespaceDriver(
                bubblewrap: bubblewrap, runtimeFiles: files, cgroups: cgroups, agentOutput: agentOutput)
        case .firecracker:
            switch FirecrackerDriver.requirements(kernel: config.kernelFilepath, rootfs: config.rootfsFilepath) {
            case .success(let firecracker):
                return FirecrackerDriver(
                    firecracker: firecracker, kernel: config.kernelFilepath ?? "", rootfs: config.rootfsFilepath ?? "",
                    agentOutput: agentOutput)
            case .failure(let problem):
                throw NexError(.unsupported, "the firecracker sandbox cannot run here: \(problem.description)")
            }
        case .vm:
            let resources: VMDriver.Resources
            do {
                resources = try await VMDriver.resources(
                    kernelFilepath: config.kernelFilepath, rootfsFilepath: config.rootfsFilepath, agent: agent,
                    cache: NexHome.path + "/vm")
            } catch {
                throw NexError(.unsupported, "the vm sandbox cannot run here: \(error)")
            }
            let accelerator = await MicroVM.accelerator(qemu: resources.qemu, kernel: resources.kernel)
            logger.info("vm sandbox", metadata: ["accelerator": "\(accelerator)", "rootfs": "\(resources.rootfs)"])
            return VMDriver(
                qemu: resources.qemu, kernel: resources.kernel, rootfs: resources.rootfs, accelerator: accelerator,
                directory: home + "/vm", agentOutput: agentOutput)
        }
    }

    /// The driver name the node's tags show (`nex.sandbox`).
    static func driverName(_ config: NodeConfiguration) -> String {
        config.noSandbox
            ? "none"
            : config.sandbox == .auto ? NodeConfiguration.SandboxKind.namespace.rawValue : config.sandbox.rawValue
    }

    static func start(node: NexNode, home: String) async throws -> NodeRuntime {
        let config = node.config
        let logger = node.logger
        let agent = agentExecutable(config)
        guard await BlockingIO.run({ FileManager.default.isExecutableFile(atPath: agent) }) else {
            throw NexError(.notFound, "nex-agent not found at \(agent) (set agent_path)")
        }
        await removeScratch(home: home, logger: logger)
        let driver = try await driver(config, agent: agent, home: home, logger: logger)
        guard let binary = NATSServerProcess.findBinary(nexHome: NexHome.path) else {
            throw NexError(
                .notFound, "nats-server not found for the internal server (PATH, NATS_SERVER_BIN, ~/.nex/bin)")
        }
        let internalNATS = try await InternalNATS.start(
            binary: binary, directory: home + "/internal-nats", logger: logger)
        let logRelay = AgentLogRelay(failures: node.events.failures, logger: logger)
        let settings = AgentPool.Settings(
            size: config.machinePoolSize, agentExecutable: agent, directory: home + "/agents", nodeID: node.nodeID,
            handshakeTimeout: .milliseconds(config.agentHandshakeTimeoutMs),
            memoryMiB: config.machineTemplate.memsizeMib, vcpuCount: config.machineTemplate.vcpuCount,
            linkEventLoop: node.events.client.taskExecutor.eventLoop,
            onLog: { agentID, level, text in logRelay.add(agentID: agentID, level: level, text: text) })
        let box = ManagerBox()
        let pool = AgentPool(
            settings: settings, driver: driver, internalNATS: internalNATS, logger: logger,
            onExit: { agent, reason in
                guard let pool = box.pool, let manager = box.manager else { return }
                if await !pool.remove(agent.id) { await manager.agentDied(agent, reason: reason) }
            })
        let journal =
            config.persistWorkloads
            ? WorkloadJournal(directory: home + "/workloads", xkey: node.xkey, logger: logger) : nil
        let manager = WorkloadManager(
            config: config, pool: pool, internalNATS: internalNATS, events: node.events, journal: journal,
            metrics: node.metrics, tracing: node.tracing, logger: logger, isLameDuck: { node.isLameDuck })
        box.set(pool: pool, manager: manager)
        let runtime = NodeRuntime(internalNATS: internalNATS, pool: pool, manager: manager)
        try await runtime.listenToAgents(logger: logger)
        // Before any agent starts; ended with the manager's other tasks when the node stops.
        manager.tasks.spawn { await logRelay.forward(to: manager) }
        await pool.fill()
        return runtime
    }

    /// One subscription for everything agents send: handshakes, events and logs.
    private func listenToAgents(logger: Logger) async throws {
        let client = internalNATS.client
        let internalNATS = self.internalNATS
        let pool = self.pool
        let manager = self.manager
        try await client.subscribe(to: AgentSubjects.allHost) { m in
            guard let (agent, rest) = AgentSubjects.parseHost(m.subject) else { return }
            switch rest.first {
            case "handshake":
                let hello: AgentHandshake
                do {
                    hello = try JSONDecoder().decode(AgentHandshake.self, from: Data(m.bytes))
                    guard hello.id == agent else { throw NexError(.invalidRequest, "it names agent \(hello.id)") }
                } catch {
                    logger.warning(
                        "an agent's handshake is malformed; refused",
                        metadata: ["nex.agent": "\(agent)", "error": "\(error)"])
                    guard let reply = m.replyTo else { return }
                    let refusal = AgentResponse(ok: false, message: "malformed handshake: \(error)")
                    try await client.publish(Array(try JSONEncoder().encode(refusal)), to: reply)
                    return
                }
                let known = await pool.handshakeArrived(hello)
                if let reply = m.replyTo {
                    let answer = AgentResponse(ok: known, message: known ? nil : "unknown agent")
                    try await client.publish(Array(try JSONEncoder().encode(answer)), to: reply)
                }
            case "reply" where rest.count == 2:
                internalNATS.replyArrived(token: String(rest[1]), message: m)
            case "rpc" where rest.count == 5:
                // Host calls may wait (a request to a slow responder): never hold up logs and events.
                let (service, method) = (String(rest[3]), String(rest[4]))
                manager.tasks.spawn {
                    let answer = await manager.hostCall(
                        agentID: agent, service: service, method: method, arguments: m.bytes, headers: m.headers)
                    guard let reply = m.replyTo else { return }
                    do { try await client.publish(answer, to: reply) } catch {
                        logger.warning(
                            "cannot answer a host call", metadata: ["nex.agent": "\(agent)", "error": "\(error)"])
                    }
                }
            case "logs":
                await manager.log(agentID: agent, body: m.bytes)
            case "events" where rest.count == 2 && rest[1] == Substring(AgentEventType.workloadExited):
                do {
                    let report = try JSONDecoder().decode(WorkloadExited.self, from: Data(m.bytes))
                    // Its own task: ending the old run (its sandbox's grace, an essential restart's journal
                    // writes) must not hold up the handshakes and replies behind it on this subscription.
                    // The workload's log lines before it were forwarded already.
                    manager.tasks.spawn { await manager.exited(agentID: agent, report) }
                } catch {
                    // The agent's own exit is still noticed (its sandbox ends), only later and without a code.
                    logger.warning(
                        "an agent's workload_exited report is malformed; ignored",
                        metadata: ["nex.agent": "\(agent)", "error": "\(error)"])
                }
            default:
                logger.debug("unexpected agent message", metadata: ["subject": "\(m.subject)"])
            }
        }
        try await client.flush()
    }

    /// Removes what a node run leaves that the next one must make anew: agents' directories, the internal
    /// server's files, the VM template, and artifact copies of workloads (the verified cache and the journal
    /// stay). Left behind by a crash, they are removed at the next start.
    static func removeScratch(home: String, logger: Logger) async {
        do {
            try await BlockingIO.run {
                let fm = FileManager.default
                var leftovers = ["agents", "internal-nats", "vm"].map { home + "/" + $0 }
                let artifacts = home + "/artifacts"
                if fm.fileExists(atPath: artifacts) {
                    leftovers += try fm.contentsOfDirectory(atPath: artifacts).filter { $0 != "verified" }.map {
                        artifacts + "/" + $0
                    }
                }
                for path in leftovers where fm.fileExists(atPath: path) { try fm.removeItem(atPath: path) }
            }
        } catch {
            logger.warning(
                "cannot remove the node's scratch files", metadata: ["home": "\(home)", "error": "\(error)"])
        }
    }

    func shutdown() async {
        // The workloads' records stay: the node starts them again when it comes back.
        await manager.stopAll(reason: "node stopped", forget: false)
        await pool.close()
        await internalNATS.stop()
    }
}

/// Lets the pool's exit callback reach the manager created after it.
private final class ManagerBox: Sendable {
    private let parts = Mutex<(pool: AgentPool?, manager: WorkloadManager?)>((nil, nil))
    var pool: AgentPool? { parts.withLock { $0.pool } }
    var manager: WorkloadManager? { parts.withLock { $0.manager } }
    func set(pool: AgentPool, manager: WorkloadManager) { parts.withLock { $0 = (pool, manager) } }
}
