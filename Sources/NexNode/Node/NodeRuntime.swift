import Foundation
import Logging
import NexAgentLink
import NexModels
import NexOCI
import NexProcess
import NexSandbox
import Synchronization

/// What a node needs to run workloads: the warm pool and the workload manager. A node without one (no
/// `nex-agent` found, or no sandbox) still answers the control API and refuses deploys with the reason.
struct NodeRuntime: Sendable {
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
        let logRelay = AgentLogRelay(failures: node.events.failures, logger: logger)
        let box = ManagerBox()
        let settings = AgentPool.Settings(
            size: config.machinePoolSize, agentExecutable: agent, directory: home + "/agents",
            handshakeTimeout: .milliseconds(config.agentHandshakeTimeoutMs),
            memoryMiB: config.machineTemplate.memsizeMib, vcpuCount: config.machineTemplate.vcpuCount,
            linkEventLoop: node.events.client.taskExecutor.eventLoop,
            handlers: { agentID in Self.linkHandlers(agentID: agentID, box: box, logRelay: logRelay, logger: logger) })
        let pool = AgentPool(
            settings: settings, driver: driver, logger: logger,
            onExit: { agent, reason in
                guard let pool = box.pool, let manager = box.manager else { return }
                if await !pool.remove(agent.id) { await manager.agentDied(agent, reason: reason) }
            })
        let journal =
            config.persistWorkloads
            ? WorkloadJournal(directory: home + "/workloads", xkey: node.xkey, logger: logger) : nil
        let images = Result { () throws(OCIError) in try ImageService(home: home, config: config) }.mapError {
            NexError(.storage, "the node has no image cache: \($0)")
        }
        let manager = WorkloadManager(
            config: config, pool: pool, events: node.events, journal: journal,
            metrics: node.metrics, tracing: node.tracing, logger: logger, images: images,
            isLameDuck: { node.isLameDuck })
        box.set(pool: pool, manager: manager)
        let runtime = NodeRuntime(pool: pool, manager: manager)
        // Before any agent starts; ended with the manager's other tasks when the node stops.
        manager.tasks.spawn { await logRelay.forward(to: manager) }
        await pool.fill()
        return runtime
    }

    /// What an agent says by itself on its link, routed to the manager: log lines and the workload's exit (in
    /// order, through the relay), and host calls (each its own task: a call may wait on a slow responder, and
    /// never holds up the lines and the exit behind it).
    private static func linkHandlers(
        agentID: String, box: ManagerBox, logRelay: AgentLogRelay, logger: Logger
    ) -> AgentLinkClient.Handlers {
        AgentLinkClient.Handlers(
            log: { level, text in logRelay.add(agentID: agentID, level: level, text: text) },
            // Behind the workload's last lines, in the same queue: they go out before it is ended.
            exited: { code, message in logRelay.exited(agentID: agentID, code: code, message: message) },
            hostCall: { call, answer in
                guard let manager = box.manager else {
                    answer(false, Array("\(call.service).\(call.method): the node is starting".utf8))
                    return
                }
                let started = manager.tasks.spawn {
                    let result = await manager.hostCall(agentID: agentID, call)
                    answer(result.ok, result.body)
                }
                if started == nil { answer(false, Array("\(call.service).\(call.method): the node is stopping".utf8)) }
            })
    }

    /// Removes what a node run leaves that the next one must make anew: agents' directories, the VM template,
    /// and artifact copies of workloads (the verified cache and the journal stay). Left behind by a crash, they
    /// are removed at the next start.
    static func removeScratch(home: String, logger: Logger) async {
        do {
            try await BlockingIO.run {
                let fm = FileManager.default
                // "internal-nats": the server nodes before the agent link carried everything ran there.
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
        // Pulls for deploys that will never run: ended, not left downloading after the node.
        if case .success(let images) = manager.images { await images.store.shutdown() }
    }
}

/// Lets the pool's exit callback reach the manager created after it.
private final class ManagerBox: Sendable {
    private let parts = Mutex<(pool: AgentPool?, manager: WorkloadManager?)>((nil, nil))
    var pool: AgentPool? { parts.withLock { $0.pool } }
    var manager: WorkloadManager? { parts.withLock { $0.manager } }
    func set(pool: AgentPool, manager: WorkloadManager) { parts.withLock { $0 = (pool, manager) } }
}
