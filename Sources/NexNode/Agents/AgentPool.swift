import Foundation
import Logging
import NIOCore
import NUID
import NexAgentLink
import NexModels
import NexProcess
import NexSandbox

/// One agent the node started, from spawn to destruction.
final class Agent: Sendable {
    let id: String
    let sandbox: any AgentSandbox
    /// Host directory private to the agent (the artifact goes here).
    let workDirectory: String
    let handshake: AgentHandshake
    /// The agent's link: everything between node and agent travels on it (it ends when the agent does).
    let link: AgentLinkClient

    init(
        id: String, sandbox: any AgentSandbox, workDirectory: String, handshake: AgentHandshake,
        link: AgentLinkClient
    ) {
        self.id = id
        self.sandbox = sandbox
        self.workDirectory = workDirectory
        self.handshake = handshake
        self.link = link
    }
}

/// The warm pool: `machine_pool_size` agents started ahead of time that said hello on their links, so a
/// deploy only has to hand its workload over. Taking an agent starts a replacement at once.
actor AgentPool {
    struct Settings {
        var size: Int
        var agentExecutable: String
        var directory: String
        var handshakeTimeout: Duration
        var memoryMiB: Int
        var vcpuCount: Int
        /// Where the node's ends of the agent links are read: the loop of the connection triggers arrive on.
        var linkEventLoop: any EventLoop
        /// What an agent says by itself on its link (on `linkEventLoop`), given the agent's id.
        var handlers: @Sendable (_ agentID: String) -> AgentLinkClient.Handlers
    }

    let settings: Settings
    let driver: any SandboxDriver
    /// Whether the driver isolates agents (then native artifacts must be static executables).
    nonisolated var isSandboxed: Bool { driver.isSandboxed }
    /// Whether the driver can run a container image's root (``launch(imageRoot:)``).
    nonisolated var runsImages: Bool { driver.runsImages }
    nonisolated var driverName: String { driver.name }
    let logger: Logger
    /// Called when an agent dies, warm or busy.
    let onExit: @Sendable (Agent, String) async -> Void

    /// Every task of the pool (starts, timers, exit watchers): cancelled and awaited by ``close()``.
    nonisolated let tasks = OwnedTasks()
    private var warm: [Agent] = []
    /// One agent started ahead in the root of each of the images deployed last (``imageWarmLimit``), with the
    /// identity of that root when it started: the next deploy of the image takes it, as a warm agent is taken.
    private var imageWarm: [ImageRoot: (agent: Agent, identity: RootIdentity)] = [:]
    /// Images deployed lately, the latest last; their agents are started ahead.
    private var recentImages: [ImageRoot] = []
    private var imageStarting: Set<ImageRoot> = []
    /// Agents past their handshake and not yet exited, warm or busy.
    private var alive: [String: Agent] = [:]
    private var starting = 0
    private var waiters:
        [(ticket: Int, continuation: CheckedContinuation<Agent, any Error>, timer: OwnedTasks.Handle?)] = []
    private var nextTicket = 0
    /// Links of agents started and not yet past their hello: closing one ends that wait (at shutdown).
    private var launching: [String: AgentLinkClient] = [:]
    /// Agents whose sandbox ended before they were ready.
    private var endedBeforeReady: Set<String> = []
    private var consecutiveFailures = 0
    private var closed = false

    init(
        settings: Settings, driver: any SandboxDriver, logger: Logger,
        onExit: @escaping @Sendable (Agent, String) async -> Void
    ) {
        self.settings = settings
        self.driver = driver
        self.logger = logger
        self.onExit = onExit
    }

    /// Warm agents ready now (INFO's `available_agents`).
    var available: Int { warm.count }
    /// Agents ready in images' roots, by image root.
    var imageAgents: [ImageRoot: String] { imageWarm.mapValues(\.agent.id) }

    /// Starts agents until the pool is full.
    func fill() {
        guard !closed else { return }
        while warm.count + starting < settings.size {
            starting += 1
            tasks.spawn { await self.startOne() }
        }
    }

    /// A warm agent, waiting for one (up to `timeout`) when none is ready.
    func take(timeout: Duration) async throws -> Agent {
        defer { fill() }
        if !warm.isEmpty { return warm.removeFirst() }
        fill()
        nextTicket += 1
        let ticket = nextTicket
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                // Decided in this actor turn: a close either came before (refused here) or comes after (it fails
                // the waiters it finds). A waiter registered after close would wait forever: no timer starts then.
                guard !closed else {
                    return continuation.resume(throwing: NexError(.unavailable, "the node is shutting down"))
                }
                let timer = tasks.spawn {
                    do { try await Task.sleep(for: timeout) } catch { return }
                    await self.endWait(ticket, NexError(.unavailable, "no agent became available in time"))
                }
                waiters.append((ticket, continuation, timer))
            }
        } onCancel: {
            // The waiter is registered in the turn that began the wait, before this task can run.
            tasks.spawn { await self.endWait(ticket, CancellationError()) }
        }
    }

    /// An agent past its handshake ended (warm or busy).
    /// An agent's sandbox ended: a ready agent is reported; one still starting is marked, so its start (which
    /// resumes after this) does not hand out an agent that is gone.
    private func ended(_ id: String, _ reason: String) async {
        guard let agent = alive.removeValue(forKey: id) else {
            if launching[id] != nil { endedBeforeReady.insert(id) }
            return
        }
        await onExit(agent, reason)
    }

    /// Ends a wait for an agent that has not been served (timed out, or its taker gave up).
    private func endWait(_ ticket: Int, _ error: any Error) {
        guard let index = waiters.firstIndex(where: { $0.ticket == ticket }) else { return }
        let waiter = waiters.remove(at: index)
        tasks.cancel(waiter.timer)
        waiter.continuation.resume(throwing: error)
    }

    /// A warm agent died: forget it (and start another).
    func remove(_ agentID: String) -> Bool {
        if let (root, _) = imageWarm.first(where: { $0.value.agent.id == agentID }) {
            imageWarm[root] = nil
            return true  // started again at the image's next deploy
        }
        guard let index = warm.firstIndex(where: { $0.id == agentID }) else { return false }
        warm.remove(at: index)
        fill()
        return true
    }

    /// Stops starting agents and destroys the warm ones.
    func close() async {
        closed = true
        let agents = Array(alive.values)
        warm.removeAll()
        imageWarm.removeAll()
        for waiter in waiters {
            waiter.continuation.resume(throwing: NexError(.unavailable, "the node is shutting down"))
        }
        waiters.removeAll()
        for link in launching.values { link.close() }
        // Warm agents, and any a workload still held: each watcher below ends when its agent is gone. Agents
        // still starting see `closed` when their hello comes (or their link ends with their sandbox).
        for agent in agents {
            await agent.sandbox.destroy(grace: .seconds(2))
            agent.link.close()
            await BlockingIO.remove(agent.workDirectory, what: "an agent's directory", logger: logger)
        }
        await tasks.shutdown()
    }

    /// Starts one warm agent, and hands it to the first waiter, if any.
    private func startOne() async {
        do {
            let agent = try await launchAgent(imageRoot: nil)
            starting -= 1
            consecutiveFailures = 0
            if closed {
                // Said hello while the pool closed: close() did not see it, so it is cleaned up here.
                await discard(agent)
            } else if !waiters.isEmpty {
                let waiter = waiters.removeFirst()
                tasks.cancel(waiter.timer)
                waiter.continuation.resume(returning: agent)
            } else {
                warm.append(agent)
            }
        } catch {
            starting -= 1
            guard !closed else { return }  // a start cut short by the shutdown is no failure
            consecutiveFailures += 1
            logger.error("agent failed to start", metadata: ["error": "\(error)"])
            // Back off so that a broken agent binary does not become a fork loop.
            let delay = Duration.milliseconds(min(100 << min(consecutiveFailures, 8), 30_000))
            do { try await Task.sleep(for: delay) } catch { return }  // the pool is closing
            fill()
        }
    }

    /// How many images keep an agent started ahead in their root: at most the pool's size (an operator who
    /// wants no idle agents gets none).
    var imageWarmLimit: Int { min(settings.size, 2) }

    /// An agent of its own for a container image's workload, in the image's root (warm agents have an empty
    /// one): the one started ahead for that image, else one started now. It is the taker's, as a warm agent
    /// taken is; another is started ahead for the image's next deploy.
    func launch(imageRoot: ImageRoot) async throws -> Agent {
        guard !closed else { throw NexError(.unavailable, "the node is shutting down") }
        if let ready = imageWarm.removeValue(forKey: imageRoot) {
            // The cache may have evicted the image and pulled it again since: that agent sees the old root.
            let sameRoot = await RootIdentity.of(imageRoot.rootfs) == ready.identity
            // Across that await the pool may have closed (and destroyed it), or the agent died.
            if sameRoot, !closed, alive[ready.agent.id] != nil {
                startAhead(imageRoot)
                return ready.agent
            }
            // close() destroys what is alive: only an agent it did not see is discarded here.
            guard !closed else { throw NexError(.unavailable, "the node is shutting down") }
            if alive.removeValue(forKey: ready.agent.id) != nil { await discard(ready.agent) }
        }
        let agent = try await launchAgent(imageRoot: imageRoot)
        guard !closed else {
            await discard(agent)
            throw NexError(.unavailable, "the node is shutting down")
        }
        startAhead(imageRoot)
        return agent
    }

    /// Starts an agent ahead in `root` (the image just deployed), and ends the one of the image least recently
    /// deployed past ``imageWarmLimit``.
    private func startAhead(_ root: ImageRoot) {
        guard !closed, imageWarmLimit > 0 else { return }
        recentImages.removeAll { $0 == root }
        recentImages.append(root)
        while recentImages.count > imageWarmLimit {
            let dropped = recentImages.removeFirst()
            if let stale = imageWarm.removeValue(forKey: dropped) {
                alive[stale.agent.id] = nil
                tasks.spawn { await self.discard(stale.agent) }
            }
        }
        guard imageWarm[root] == nil, !imageStarting.contains(root) else { return }
        imageStarting.insert(root)
        tasks.spawn { await self.startImageAgent(root) }
    }

    private func startImageAgent(_ root: ImageRoot) async {
        defer { imageStarting.remove(root) }
        guard let identity = await RootIdentity.of(root.rootfs) else { return }  // evicted meanwhile
        let agent: Agent
        do { agent = try await launchAgent(imageRoot: root) } catch {
            if !closed { logger.debug("agent for an image failed to start ahead", metadata: ["error": "\(error)"]) }
            return
        }
        // Still wanted: the pool is open and the image among the latest (and none was started meanwhile).
        guard !closed, recentImages.contains(root), imageWarm[root] == nil else {
            alive[agent.id] = nil
            await discard(agent)
            return
        }
        imageWarm[root] = (agent, identity)
    }

    /// Destroys an agent nobody will use (the pool closed while it started).
    private func discard(_ agent: Agent) async {
        await agent.sandbox.destroy(grace: .seconds(1))
        agent.link.close()
        await BlockingIO.remove(agent.workDirectory, what: "an agent's directory", logger: logger)
    }

    /// Starts an agent in its sandbox and waits for its hello; it is alive (its exit reported) once returned.
    /// Whatever it started is cleaned up when it fails.
    private func launchAgent(imageRoot: ImageRoot?) async throws -> Agent {
        let id = NUID.next().lowercased()
        let directory = settings.directory + "/" + id
        var sandbox: (any AgentSandbox)?
        var link: AgentLinkClient?
        do {
            try await BlockingIO.run {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            let (nodeEnd, agentEnd) = try LinkSocket.socketPair()
            let agentLink: AgentLinkClient
            do {
                agentLink = try await AgentLinkClient.start(
                    descriptor: nodeEnd, on: settings.linkEventLoop, handlers: settings.handlers(id))
            } catch {
                Foundation.close(agentEnd)
                throw error
            }
            link = agentLink
            launching[id] = agentLink
            defer {
                launching[id] = nil
                endedBeforeReady.remove(id)
            }
            // close() ran during the awaits above: it closes the links it finds, and this one it did not.
            guard !closed else { throw NexError(.unavailable, "the node is shutting down") }
            var spec = AgentLaunchSpec(
                agentID: id, agentExecutable: settings.agentExecutable, workDirectory: directory,
                memoryMiB: settings.memoryMiB, vcpuCount: settings.vcpuCount, linkDescriptor: agentEnd)
            spec.imageRoot = imageRoot
            let launched: any AgentSandbox
            do {
                // The driver gave the agent its own copy (or relays it); ours is closed either way.
                defer { Foundation.close(agentEnd) }
                launched = try await driver.launch(spec)
            }
            sandbox = launched
            // Watches the agent for its whole life. One that dies before its hello ends the wait at once (a VM's
            // relay would keep its end of the link open until the timeout).
            tasks.spawn {
                let termination = await launched.wait()
                await self.ended(id, "agent \(termination)")
                agentLink.close()
            }
            let hello = try await agentLink.awaitHello(timeout: settings.handshakeTimeout)
            guard !endedBeforeReady.contains(id) else { throw NexError(.unavailable, "the agent ended at once") }
            if let refusal = Self.refusal(of: hello, expecting: id) {
                agentLink.welcome(AgentResponse(ok: false, message: refusal))
                throw NexError(.unavailable, "agent refused: \(refusal)")
            }
            agentLink.welcome(AgentResponse(ok: true))
            let agent = Agent(
                id: id, sandbox: launched, workDirectory: directory, handshake: hello, link: agentLink)
            alive[id] = agent
            logger.debug(
                "agent ready", metadata: ["nex.agent": "\(id)", "startup_ms": "\(hello.startupMillis)"])
            return agent
        } catch {
            await sandbox?.destroy(grace: .seconds(1))
            link?.close()
            await BlockingIO.remove(directory, what: "an agent's directory", logger: logger)
            if !closed { logger.debug("agent failed to start", metadata: ["nex.agent": "\(id)"]) }
            throw error
        }
    }

    /// Why an agent's hello is refused: another agent's id, or another link protocol.
    static func refusal(of hello: AgentHandshake, expecting id: String) -> String? {
        if hello.id != id { return "it says it is agent \(hello.id), not \(id)" }
        if hello.protocolVersion != LinkFrame.protocolVersion {
            return "it speaks link protocol \(hello.protocolVersion), this node \(LinkFrame.protocolVersion): "
                + "use the nex-agent built with this node (agent_path)"
        }
        return nil
    }
}

/// Which directory a path names: an image pulled again after its eviction is another, even where the file
/// system gives the new directory the old one's inode number (its change time differs).
struct RootIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
    var changedSeconds: Int
    var changedNanoseconds: Int

    static func of(_ path: String) async -> RootIdentity? {
        await BlockingIO.run {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return RootIdentity(
                device: UInt64(info.st_dev), inode: UInt64(info.st_ino), changedSeconds: info.st_ctim.tv_sec,
                changedNanoseconds: info.st_ctim.tv_nsec)
        }
    }
}
