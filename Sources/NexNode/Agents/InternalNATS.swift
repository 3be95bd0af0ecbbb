import Foundation
import Logging
import NATS
import NIOCore
import NIOPosix
import NKeys
import NUID
import NexModels
import NexProcess
import Synchronization

/// The node's internal NATS server: a `nats-server` child on loopback (never reachable from outside) that
/// only the node and its agents use. The node connects with full rights; each agent gets its own nkey user
/// that may publish only to `hostint.<agent>.>` and subscribe only to `agentint.<agent>.>` (plus replies to
/// what it is asked). Users are added and removed by rewriting the config and reloading the server.
final class InternalNATS: Sendable {
    let server: NATSServerProcess
    /// The node's own connection.
    let client: NATSClient
    private let nodeKey: NKeyPair
    private let agents: Mutex<[String: String]>  // agent id → public nkey
    /// The agent logging in now, and removals waiting for it (see ``addAgent(_:)``).
    private let gate = Mutex<(connecting: String?, removals: Set<String>)>((nil, []))
    private let pending = Mutex<[String: CheckedContinuation<NATSMessage, any Error>]>([:])
    private let stopped = Atomic<Bool>(false)
    private let logger: Logger

    private init(server: NATSServerProcess, client: NATSClient, nodeKey: NKeyPair, logger: Logger) {
        self.server = server
        self.client = client
        self.nodeKey = nodeKey
        self.agents = Mutex([:])
        self.logger = logger
    }

    /// Starts the server in `directory` and connects the node to it.
    static func start(binary: String, directory: String, logger: Logger) async throws -> InternalNATS {
        let nodeKey = NKeyPair.generate(.user)
        let server = try await NATSServerProcess.start(
            binary: binary, directory: directory, config: config(node: nodeKey.publicKey, agents: [:]))
        var configuration = NATSClient.Configuration(servers: [server.url])
        configuration.name = "nex-node-internal"
        configuration.auth = .nkey(seed: nodeKey.seed!)
        configuration.connectTimeout = .seconds(10)
        configuration.requestTimeout = .seconds(10)
        let client = NATSClient(configuration: configuration)
        do { try await client.connect() } catch {
            await server.stop()
            throw error
        }
        return InternalNATS(server: server, client: client, nodeKey: nodeKey, logger: logger)
    }

    /// The server config: loopback only, no monitoring, one nkey user per agent with its own subjects.
    static func config(node: String, agents: [String: String]) -> String {
        var users = ["    { nkey: \(node) }"]
        for (id, key) in agents.sorted(by: { $0.key < $1.key }) {
            users.append(
                """
                    { nkey: \(key), permissions: { \
                publish: { allow: ["\(AgentSubjects.publishAllowed(agent: id))"] }, \
                subscribe: { allow: ["\(AgentSubjects.subscribeAllowed(agent: id))"] } } }
                """)
        }
        return """
            # Written by the Nex node: its internal server for agents. Do not edit.
            host: 127.0.0.1
            port: -1
            max_payload: 8MB
            authorization {
              # An agent has this long from dial to CONNECT. The default (2 s) was missed by agents starting
              # on a loaded machine ("Authentication Timeout"), which then failed before their handshake.
              timeout: 15
              users: [
            \(users.joined(separator: "\n"))
              ]
            }

            """
    }

    /// Creates credentials for `agentID`, reloads the server, and returns the agent's seed once the server
    /// accepts it (a reload is asynchronous: an agent started earlier could be refused).
    ///
    /// A reload also closes every connection that has not yet logged in, so it must not fall inside another
    /// agent's login: one agent connects at a time (until ``agentConnected(_:)`` or ``removeAgent(_:)``),
    /// and removals wait for that. A VM's agent takes a good part of a second from dial to login.
    func addAgent(_ agentID: String) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(60)
        while !gate.withLock({ g in
            guard g.connecting == nil else { return false }
            g.connecting = agentID
            return true
        }) {
            guard ContinuousClock.now < deadline else {
                throw NexError(.unavailable, "another agent is still logging in")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        let key = NKeyPair.generate(.user)
        do { try reload { $0[agentID] = key.publicKey } } catch {
            agentConnected(agentID)
            throw error
        }
        let seed = key.seed!
        var probe = NATSClient.Configuration(servers: [server.url])
        probe.auth = .nkey(seed: seed)
        probe.connectTimeout = .seconds(2)
        probe.allowReconnect = false
        for attempt in 1...200 {
            let client = NATSClient(configuration: probe)
            do {
                try await client.connect()
                await client.close()
                return seed
            } catch {
                await client.close()
                if attempt == 200 { throw error }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        return seed
    }

    /// Asks an agent something: the reply comes back on `hostint.<agent>.reply.<token>` (see
    /// ``AgentSubjects/reply(agent:token:)``), which the node's one `hostint.>` subscription hands to
    /// ``replyArrived(token:payload:)``.
    nonisolated(nonsending) func request(
        _ payload: [UInt8], to subject: String, agent: String, headers: NATSHeaders? = nil, timeout: Duration
    ) async throws -> NATSMessage {
        let token = NUID.next()
        // An event-loop timer, cancelled as soon as the answer arrives: no task per trigger. Armed after the
        // request is registered, so a timer that fires at once still finds it.
        var timer: Scheduled<Void>?
        defer { timer?.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            pending.withLock { $0[token] = continuation }
            timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: timeout.timeAmount) {
                self.complete(token, .failure(AgentRequestTimeout(subject: subject, timeout: timeout)))
            }
            do {
                // Queued for the socket right here: no extra task hop on the trigger path.
                try client.enqueueAndFlush(
                    payload, to: subject, replyTo: AgentSubjects.reply(agent: agent, token: token), headers: headers)
            } catch {
                complete(token, .failure(error))
            }
        }
    }

    /// An agent's answer to ``request(_:to:agent:timeout:)``.
    func replyArrived(token: String, message: NATSMessage) {
        complete(token, .success(message))
    }

    private func complete(_ token: String, _ result: Result<NATSMessage, any Error>) {
        pending.withLock { $0.removeValue(forKey: token) }?.resume(with: result)
    }

    /// `agentID` logged in (or gave up): the next agent may connect, and removals held back are made.
    func agentConnected(_ agentID: String) {
        let flush = gate.withLock { g -> Bool in
            guard g.connecting == agentID else { return false }
            g.connecting = nil
            return !g.removals.isEmpty
        }
        if flush { removeAgents([]) }
    }

    /// Revokes `agentID`'s credentials (its connection, if any, is closed by the reload), at once unless
    /// another agent is logging in.
    func removeAgent(_ agentID: String) {
        agentConnected(agentID)
        removeAgents([agentID])
    }

    private func removeAgents(_ ids: Set<String>) {
        let now = gate.withLock { g -> Set<String>? in
            g.removals.formUnion(ids)
            guard g.connecting == nil else { return nil }
            defer { g.removals.removeAll() }
            return g.removals
        }
        guard let now, !now.isEmpty else { return }
        do { try reload { agents in for id in now { agents[id] = nil } } } catch {
            logger.warning("cannot reload the internal NATS server", metadata: ["error": "\(error)"])
        }
    }

    private func reload(_ change: (inout [String: String]) -> Void) throws {
        guard !stopped.load(ordering: .relaxed) else { return }
        try agents.withLock { agents in
            change(&agents)
            try server.reload(config: Self.config(node: nodeKey.publicKey, agents: agents))
        }
    }

    func stop() async {
        stopped.store(true, ordering: .relaxed)
        await client.close()
        await server.stop()
    }
}

/// An agent did not answer in time.
struct AgentRequestTimeout: Error, CustomStringConvertible {
    var subject: String
    var timeout: Duration
    var description: String { "no answer on \(subject) within \(timeout)" }
}
