/// What a node gives the agents it starts: where the agent's link to the node is and who it is, and nothing
/// else (no server, no credentials). Everything between the two travels on that link, as `LinkFrame`s
/// (NexAgentLink; `docs/agent-protocol.md`).
public enum AgentEnvironment {
    /// The agent's id, which it repeats in its hello.
    public static let agentID = "NEX_AGENT_ID"
    /// The descriptor number of the agent's end of its link to the node (a process or namespace sandbox).
    public static let linkFD = "NEX_AGENT_LINK_FD"
    /// The descriptor the link is given as (after stdin, stdout and stderr).
    public static let linkDescriptor: Int32 = 3
    /// In a Firecracker VM: the vsock port (on the host, CID 2) of the link.
    public static let linkVsockPort = "NEX_AGENT_LINK_VSOCK_PORT"
    /// In a `vm` sandbox: `host:port` of the link.
    public static let linkTCP = "NEX_AGENT_LINK_TCP"
    /// In a Firecracker VM: the vsock port of the control channel (settings, then the artifact on request),
    /// which ``vmControl`` is over TCP.
    public static let controlVsockPort = "NEX_AGENT_CONTROL_VSOCK_PORT"
    /// In a `vm` sandbox: `host:port` of the node's control channel. The agent dials it at boot (before the
    /// VM is snapshotted), then waits for its settings: one line of JSON, an object of these variables.
    public static let vmControl = "NEX_AGENT_VM_CONTROL"
    /// In a `vm` sandbox, where the agent starts as root: the user it (and so its workload) runs as, `UID` (its
    /// own group) or `UID:GID`.
    public static let runAs = "NEX_AGENT_RUN_AS"
    /// Set to 1 by a VM's `/init` that started the agent in a container image's root.
    public static let inImage = "NEX_AGENT_IN_IMAGE"
}

/// How a `vm` sandbox's guest reaches the node: QEMU user networking with no route out, where each
/// address below is forwarded (`guestfwd`) to a Unix socket the node listens on. Each carries one
/// connection for the life of the VM.
public enum VMChannel {
    /// The host-side address every channel appears at in the guest.
    public static let host = "10.0.2.100"
    public static let linkPort = 4223
    public static let controlPort = 4224
    /// Ports for the servers a service was given, in order.
    public static let servicePorts = [4230, 4231, 4232, 4233]
    /// The agent's request for its workload's artifact on the control channel; the node answers
    /// `OK <size>\n` and the bytes, or `ERR <reason>\n`.
    public static let artifactRequest = "ARTIFACT\n"
    /// What the agent prints (on the VM's console) once it waits for settings: the VM can be snapshotted.
    public static let waitingLine = "nex-agent: waiting for the node's settings"
}

/// An agent's first words on its link: who it is, the link protocol it speaks, and that it is ready.
public struct AgentHandshake: Codable, Sendable, Equatable {
    public var id: String
    public var version: String
    public var pid: Int32
    /// Milliseconds from process start to the handshake, as the agent measured it.
    public var startupMillis: Double
    /// The link protocol the agent speaks (`LinkFrame.protocolVersion` of its build).
    public var protocolVersion: Int

    public init(id: String, version: String, pid: Int32, startupMillis: Double, protocolVersion: Int) {
        self.id = id
        self.version = version
        self.pid = pid
        self.startupMillis = startupMillis
        self.protocolVersion = protocolVersion
    }

    enum CodingKeys: String, CodingKey {
        case id, version, pid
        case startupMillis = "startup_ms"
        case protocolVersion = "protocol"
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
    /// Decrypted environment (it travels only on this agent's private link).
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
    /// The file a function came from (`echofunction.js`), named in its stacks (nil: `function.js`).
    public var sourceName: String?
    /// Set for a container image's service: where its process starts. Its executable (``artifactPath``) is the
    /// image's own, read-only, run as it is; the environment already holds the image's variables.
    public var workingDirectory: String?

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
        case sourceName = "source_name"
        case workingDirectory = "working_directory"
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

/// An agent's answer to its welcome, or to a deploy, stop or heartbeat.
public struct AgentResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    public var message: String?

    public init(ok: Bool, message: String? = nil) {
        self.ok = ok
        self.message = message
    }
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
