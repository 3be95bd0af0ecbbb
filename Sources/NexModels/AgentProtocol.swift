/// The internal node ↔ agent protocol (wire contract §5), spoken over the node's internal NATS server.
///
/// The agent requests `hostint.<agent>.handshake` once connected, publishes `hostint.<agent>.events.<type>`
/// and `hostint.<agent>.logs`; the node requests `agentint.<agent>.ping|deploy|undeploy`. Each agent's
/// credentials allow only its own `hostint.<agent>.>` (publish) and `agentint.<agent>.>` (subscribe).
/// A function's triggers do not use this server: they travel on the agent's private link (NexAgentLink),
/// a socket the node hands the agent as descriptor ``AgentEnvironment/linkDescriptor``.
public enum AgentSubjects {
    public static func handshake(agent: String) -> String { "hostint.\(agent).handshake" }
    public static func event(agent: String, type: String) -> String { "hostint.\(agent).events.\(type)" }
    public static func logs(agent: String) -> String { "hostint.\(agent).logs" }
    public static func ping(agent: String) -> String { "agentint.\(agent).ping" }
    public static func deploy(agent: String) -> String { "agentint.\(agent).deploy" }
    public static func undeploy(agent: String) -> String { "agentint.\(agent).undeploy" }
    /// Where an agent answers the node's request `token`: inside what it may publish to, so agents need no
    /// `allow_responses` (which a config reload resets mid-request) and none can answer for another.
    public static func reply(agent: String, token: String) -> String { "hostint.\(agent).reply.\(token)" }
    /// A host-service call of the agent's workload (answered by the node).
    public static func hostCall(agent: String, namespace: String, workload: String, service: String, method: String)
        -> String
    {
        "hostint.\(agent).rpc.\(namespace).\(workload).\(service).\(method)"
    }
    /// Where the agent's own request replies arrive (inside what it may subscribe to).
    public static func inboxPrefix(agent: String) -> String { "agentint.\(agent).inbox" }
    /// What the agent may publish to.
    public static func publishAllowed(agent: String) -> String { "hostint.\(agent).>" }
    /// What the agent may subscribe to.
    public static func subscribeAllowed(agent: String) -> String { "agentint.\(agent).>" }
    /// Everything agents publish, for the node's one subscription.
    public static let allHost = "hostint.>"

    /// The agent id in a `hostint.<agent>.…` subject, and what follows it.
    public static func parseHost(_ subject: String) -> (agent: String, rest: [Substring])? {
        let parts = subject.split(separator: ".")
        guard parts.count >= 3, parts[0] == "hostint" else { return nil }
        return (String(parts[1]), Array(parts[2...]))
    }
}

/// Environment variables the node gives an agent process.
public enum AgentEnvironment {
    public static let agentID = "NEX_AGENT_ID"
    public static let natsURL = "NEX_AGENT_NATS_URL"
    public static let nkeySeed = "NEX_AGENT_NKEY_SEED"
    public static let nodeID = "NEX_NODE_ID"
    /// The descriptor of an already connected socket to the internal NATS server (sandboxed agents, which
    /// have no network: the node relays it to the server's port). Unset: the agent dials the URL.
    public static let natsFD = "NEX_AGENT_NATS_FD"
    /// In a VM: the vsock port (on the host, CID 2) of the internal NATS relay; the agent dials it and uses
    /// the connection as ``natsFD`` would be used.
    public static let natsVsockPort = "NEX_AGENT_NATS_VSOCK_PORT"
    /// In a VM: the vsock port of the trigger link.
    public static let linkVsockPort = "NEX_AGENT_LINK_VSOCK_PORT"
    /// In a Firecracker VM: the vsock port of the control channel (settings, then the artifact on request),
    /// which ``vmControl`` is over TCP.
    public static let controlVsockPort = "NEX_AGENT_CONTROL_VSOCK_PORT"
    /// The descriptor number of the agent's end of its link to the node.
    public static let linkFD = "NEX_AGENT_LINK_FD"
    /// The descriptor the link is given as (after stdin, stdout and stderr).
    public static let linkDescriptor: Int32 = 3
    /// In a `vm` sandbox: `host:port` of the node's control channel. The agent dials it at boot (before the
    /// VM is snapshotted), then waits for its settings: one line of JSON, an object of these variables.
    public static let vmControl = "NEX_AGENT_VM_CONTROL"
    /// In a `vm` sandbox, where the agent starts as root: the user id it (and so its workload) runs as.
    public static let runAs = "NEX_AGENT_RUN_AS"
    /// In a `vm` sandbox: `host:port` of the internal NATS relay; the agent dials it and writes
    /// ``VMChannel/natsPreamble`` first (the relay connects to the server only then).
    public static let natsTCP = "NEX_AGENT_NATS_TCP"
    /// In a `vm` sandbox: `host:port` of the trigger link.
    public static let linkTCP = "NEX_AGENT_LINK_TCP"
}

/// How a `vm` sandbox's guest reaches the node: QEMU user networking with no route out, where each
/// address below is forwarded (`guestfwd`) to a Unix socket the node listens on. Each carries one
/// connection for the life of the VM.
public enum VMChannel {
    /// The host-side address every channel appears at in the guest.
    public static let host = "10.0.2.100"
    public static let natsPort = 4222
    public static let linkPort = 4223
    public static let controlPort = 4224
    /// Ports for the servers a service was given, in order.
    public static let servicePorts = [4230, 4231, 4232, 4233]
    /// What the agent writes on the NATS channel before the server speaks (its INFO would otherwise be
    /// sent, and a login deadline run, before the guest is there to read it).
    public static let natsPreamble: [UInt8] = Array("NEX\n".utf8)
    /// The agent's request for its workload's artifact on the control channel; the node answers
    /// `OK <size>\n` and the bytes, or `ERR <reason>\n`.
    public static let artifactRequest = "ARTIFACT\n"
    /// What the agent prints (on the VM's console) once it waits for settings: the VM can be snapshotted.
    public static let waitingLine = "nex-agent: waiting for the node's settings"
}

/// An agent's first words: who it is, and that it is ready for a workload.
public struct AgentHandshake: Codable, Sendable, Equatable {
    public var id: String
    public var version: String
    public var pid: Int32
    /// Milliseconds from process start to the handshake, as the agent measured it.
    public var startupMillis: Double

    public init(id: String, version: String, pid: Int32, startupMillis: Double) {
        self.id = id
        self.version = version
        self.pid = pid
        self.startupMillis = startupMillis
    }

    enum CodingKeys: String, CodingKey {
        case id, version, pid
        case startupMillis = "startup_ms"
    }
}

/// What the node asks an agent to run.
public struct AgentDeployRequest: Codable, Sendable, Equatable {
    public var workloadID: String
    public var workloadName: String
    public var namespace: String
    /// `native`, `v8` or `wasm`.
    public var type: String
    public var argv: [String]
    /// Decrypted environment (it travels only on the internal server, to this agent alone).
    public var environment: [String: String]
    public var essential: Bool
    /// The artifact as the agent sees it.
    public var artifactPath: String
    public var totalBytes: Int
    public var triggerSubjects: [String]
    /// Function limits from the node's configuration (nil: the runner's defaults).
    public var limits: FunctionLimits?
    /// How many triggers of a function run at once, each on its own engine instance (nil: one).
    public var maxConcurrency: Int?

    public init(
        workloadID: String, workloadName: String, namespace: String, type: String, argv: [String],
        environment: [String: String], essential: Bool, artifactPath: String, totalBytes: Int,
        triggerSubjects: [String], limits: FunctionLimits? = nil, maxConcurrency: Int? = nil
    ) {
        self.workloadID = workloadID
        self.workloadName = workloadName
        self.namespace = namespace
        self.type = type
        self.argv = argv
        self.environment = environment
        self.essential = essential
        self.artifactPath = artifactPath
        self.totalBytes = totalBytes
        self.triggerSubjects = triggerSubjects
        self.limits = limits
        self.maxConcurrency = maxConcurrency
    }

    enum CodingKeys: String, CodingKey {
        case namespace, type, argv, environment, essential
        case workloadID = "workload_id"
        case workloadName = "workload_name"
        case artifactPath = "artifact_path"
        case totalBytes = "total_bytes"
        case triggerSubjects = "trigger_subjects"
        case limits
        case maxConcurrency = "max_concurrency"
    }
}

/// Limits of one function call (node configuration `function_limits`).
public struct FunctionLimits: Codable, Sendable, Equatable {
    /// CPU time per trigger, for JavaScript and WebAssembly alike.
    public var cpuMillis: Int
    /// V8 heap and, separately, ArrayBuffer memory for JavaScript; linear memory for WebAssembly.
    public var memoryMiB: Int
    /// Triggers of one function that may wait on a node for a free instance (beyond its `max_concurrency`
    /// running); past that a trigger is refused at once as overloaded.
    public var queueDepth: Int

    public init(cpuMillis: Int = 5_000, memoryMiB: Int = 64, queueDepth: Int = 256) {
        self.cpuMillis = cpuMillis
        self.memoryMiB = memoryMiB
        self.queueDepth = queueDepth
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cpuMillis = "cpu_ms"
        case memoryMiB = "memory_mib"
        case queueDepth = "queue_depth"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let defaults = FunctionLimits()
        cpuMillis = try c.decodeIfPresent(Int.self, forKey: .cpuMillis) ?? defaults.cpuMillis
        memoryMiB = try c.decodeIfPresent(Int.self, forKey: .memoryMiB) ?? defaults.memoryMiB
        queueDepth = try c.decodeIfPresent(Int.self, forKey: .queueDepth) ?? defaults.queueDepth
    }
}

/// An agent's answer to deploy, ping or undeploy.
public struct AgentResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    public var message: String?

    public init(ok: Bool, message: String? = nil) {
        self.ok = ok
        self.message = message
    }
}

/// Events an agent reports about its workload.
public enum AgentEventType {
    /// The workload ended (a service exited); data is ``WorkloadExited``.
    public static let workloadExited = "workload_exited"
}

/// A workload's process ended.
public struct WorkloadExited: Codable, Sendable, Equatable {
    public var workloadID: String
    /// The exit code (128 + signal when killed by a signal).
    public var code: Int
    public var message: String

    public init(workloadID: String, code: Int, message: String) {
        self.workloadID = workloadID
        self.code = code
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case code, message
        case workloadID = "workload_id"
    }
}
