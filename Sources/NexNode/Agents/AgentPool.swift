import Foundation
import Logging
import NIOCore
import NUID
import NexAgentLink
import NexModels
import NexSandbox

/// One agent the node started, from spawn to destruction.
final class Agent: Sendable {
    let id: String
    let sandbox: any AgentSandbox
    /// Host directory private to the agent (the artifact goes here).
    let workDirectory: String
    let handshake: AgentHandshake
    /// The private link that carries the function's triggers (it ends when the agent does).
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

/// The warm pool: `machine_pool_size` agents started ahead of time and handshaken, so a deploy only has to
/// hand its workload over. Taking an agent starts a replacement at once.
actor AgentPool {
    struct Settings {
        var size: Int
        var agentExecutable: String
        var directory: String
        var nodeID: String
        var handshakeTimeout: Duration
        var memoryMiB: Int
        var vcpuCount: Int
        /// Where the node's ends of the agent links are read: the loop of the connection triggers arrive on.
        var linkEventLoop: any EventLoop
        /// Takes the lines a function logs, which arrive on its agent's link (on `linkEventLoop`).
        var onLog: @Sendable (_ agentID: String, _ level: Int, _ text: [UInt8]) -> Void
    }

    let settings: Settings
    let driver: any SandboxDriver
    /// Whether the driver isolates agents (then native artifacts must be static executables).
    nonisolated var isSandboxed: Bool { driver.isSandboxed }
    nonisolated var driverName: String { driver.name }
    let internalNATS: InternalNATS
    let logger: Logger
    /// Called when an agent dies, warm or busy.
    let onExit: @Sendable (Agent, String) async -> Void

    /// Every task of the pool (starts, timers, exit watchers): cancelled and awaited by ``close()``.
    nonisolated let tasks = OwnedTasks()
    private var warm: [Agent] = []
    /// Agents past their handshake and not yet exited, warm or busy.
    private var alive: [String: Agent] = [:]
    private var starting = 0
    private var waiters:
        [(ticket: Int, continuation: CheckedContinuation<Agent, any Error>, timer: OwnedTasks.Handle?)] = []
    private var nextTicket = 0
    private var handshakes: [String: CheckedContinuation<AgentHandshake, any Error>] = [:]
    /// Agents being launched, and the hellos that arrived before the pool began to wait for them (the launch
    /// suspends, so an agent can answer before ``waitForHandshake(_:sandbox:)`` runs).
    private var launching: Set<String> = []
    private var earlyHellos: [String: AgentHandshake] = [:]
    private var consecutiveFailures = 0
    private var closed = false

    init(
        settings: Settings, driver: any SandboxDriver, internalNATS: InternalNATS, logger: Logger,
        onExit: @escaping @Sendable (Agent, String) async -> Void
    ) {
        self.settings = settings
        self.driver = driver
        self.internalNATS = internalNATS
        self.logger = logger
        self.onExit = onExit
    }

    /// Warm agents ready now (INFO's `available_agents`).
    var available: Int { warm.count }

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
        return try await withCheckedThrowingContinuation { continuation in
            // Decided in this actor turn: a close either came before (refused here) or comes after (it fails
            // the waiters it finds). A waiter registered after close would wait forever: no timer starts then.
            guard !closed else {
                return continuation.resume(throwing: NexError(.unavailable, "the node is shutting down"))
            }
            let timer = tasks.spawn {
                do { try await Task.sleep(for: timeout) } catch { return }
                await self.timeOutWaiter(ticket)
            }
            waiters.append((ticket, continuation, timer))
        }
    }

    /// An agent past its handshake ended (warm or busy).
    private func exited(_ agent: Agent, _ reason: String) async {
        alive[agent.id] = nil
        await onExit(agent, reason)
    }

    private func timeOutWaiter(_ ticket: Int) {
        guard let index = waiters.firstIndex(where: { $0.ticket == ticket }) else { return }
        waiters.remove(at: index).continuation.resume(
            throwing: NexError(.unavailable, "no agent became available in time"))
    }

    /// An agent said hello.
    func handshakeArrived(_ hello: AgentHandshake) -> Bool {
        if let continuation = handshakes.removeValue(forKey: hello.id) {
            continuation.resume(returning: hello)
            return true
        }
        guard launching.contains(hello.id) else { return false }
        earlyHellos[hello.id] = hello
        return true
    }

    /// A warm agent died: forget it (and start another).
    func remove(_ agentID: String) -> Bool {
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
        for waiter in waiters {
            waiter.continuation.resume(throwing: NexError(.unavailable, "the node is shutting down"))
        }
        waiters.removeAll()
        for id in Array(handshakes.keys) { failHandshake(id, "the node is shutting down") }
        // Warm agents, and any a workload still held: each watcher below ends when its agent is gone.
        for agent in agents {
            await agent.sandbox.destroy(grace: .seconds(2))
            internalNATS.removeAgent(agent.id)
            await BlockingIO.remove(agent.workDirectory, what: "an agent's directory", logger: logger)
        }
        await tasks.shutdown()
    }

    private func startOne() async {
        let id = NUID.next().lowercased()
        let directory = settings.directory + "/" + id
        var sandbox: (any AgentSandbox)?
        var link: AgentLinkClient?
        do {
            try await BlockingIO.run {
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            }
            let seed = try await internalNATS.addAgent(id)
            launching.insert(id)
            defer {
                launching.remove(id)
                earlyHellos[id] = nil
            }
            let (nodeEnd, agentEnd) = try LinkSocket.socketPair()
            let agentLink: AgentLinkClient
            do {
                let onLog = settings.onLog
                agentLink = try await AgentLinkClient.start(descriptor: nodeEnd, on: settings.linkEventLoop) {
                    level, text in onLog(id, level, text)
                }
            } catch {
                Foundation.close(agentEnd)
                throw error
            }
            link = agentLink
            let spec = AgentLaunchSpec(
                agentID: id, agentExecutable: settings.agentExecutable, natsURL: internalNATS.server.url,
                nkeySeed: seed, nodeID: settings.nodeID, workDirectory: directory, memoryMiB: settings.memoryMiB,
                vcpuCount: settings.vcpuCount, linkDescriptor: agentEnd)
            let launched: any AgentSandbox
            do {
                // The driver gave the agent its own copy (or relays it); ours is closed either way.
                defer { Foundation.close(agentEnd) }
                launched = try await driver.launch(spec)
            }
            sandbox = launched
            let hello = try await waitForHandshake(id, sandbox: launched)
            internalNATS.agentConnected(id)
            let agent = Agent(
                id: id, sandbox: launched, workDirectory: directory, handshake: hello, link: agentLink)
            starting -= 1
            consecutiveFailures = 0
            alive[id] = agent
            tasks.spawn {
                let termination = await launched.wait()
                await self.exited(agent, "agent \(termination)")
            }
            logger.debug(
                "agent ready", metadata: ["nex.agent": "\(id)", "startup_ms": "\(hello.startupMillis)"])
            if closed {
                // Handshaken while the pool closed: close() did not see it, so it is cleaned up here.
                await launched.destroy(grace: .seconds(1))
                agentLink.close()
                internalNATS.removeAgent(id)
                await BlockingIO.remove(directory, what: "an agent's directory", logger: logger)
            } else if !waiters.isEmpty {
                let waiter = waiters.removeFirst()
                tasks.cancel(waiter.timer)
                waiter.continuation.resume(returning: agent)
            } else {
                warm.append(agent)
            }
        } catch {
            starting -= 1
            consecutiveFailures += 1
            logger.error("agent failed to start", metadata: ["nex.agent": "\(id)", "error": "\(error)"])
            await sandbox?.destroy(grace: .seconds(1))
            link?.close()
            internalNATS.removeAgent(id)
            await BlockingIO.remove(directory, what: "an agent's directory", logger: logger)
            // Back off so that a broken agent binary does not become a fork loop.
            let delay = Duration.milliseconds(min(100 << min(consecutiveFailures, 8), 30_000))
            try? await Task.sleep(for: delay)
            fill()
        }
    }

    private func waitForHandshake(_ id: String, sandbox: any AgentSandbox) async throws -> AgentHandshake {
        if let hello = earlyHellos.removeValue(forKey: id) { return hello }
        let timeout = settings.handshakeTimeout
        var timer: OwnedTasks.Handle?
        defer { tasks.cancel(timer) }
        return try await withCheckedThrowingContinuation { continuation in
            // As in take: after close, nothing would ever fail this wait.
            guard !closed else {
                return continuation.resume(throwing: NexError(.unavailable, "the node is shutting down"))
            }
            handshakes[id] = continuation
            timer = tasks.spawn {
                do { try await Task.sleep(for: timeout) } catch { return }
                await self.failHandshake(id, "no handshake within \(timeout)")
            }
            // Lives as long as the agent (a no-op after the handshake); the pool's close waits for it.
            tasks.spawn {
                let termination = await sandbox.wait()
                await self.failHandshake(id, "agent \(termination) before its handshake")
            }
        }
    }

    private func failHandshake(_ id: String, _ reason: String) {
        handshakes.removeValue(forKey: id)?.resume(throwing: NexError(.unavailable, reason))
    }
}
