/// `$NEX.PING` / `$NEX.PING.<node>` / `$NEX.AUCTION` reply data.
public struct PingResponse: Codable, Sendable, Equatable {
    /// The node's public server nkey (`N…`).
    public var nodeID: String
    public var nexus: String?
    public var version: String
    /// Go duration text, e.g. `1h2m3s`.
    public var uptime: String
    /// The node's current curve key (`X…`): seal deploy environments to it.
    public var targetXkey: String
    public var tags: [String: String]
    public var runningMachines: Int

    public init(
        nodeID: String, nexus: String? = nil, version: String, uptime: String, targetXkey: String,
        tags: [String: String], runningMachines: Int
    ) {
        self.nodeID = nodeID
        self.nexus = nexus
        self.version = version
        self.uptime = uptime
        self.targetXkey = targetXkey
        self.tags = tags
        self.runningMachines = runningMachines
    }

    enum CodingKeys: String, CodingKey {
        case nexus, version, uptime, tags
        case nodeID = "node_id"
        case targetXkey = "target_xkey"
        case runningMachines = "running_machines"
    }
}

/// Auction replies carry the ping fields.
public typealias AuctionResponse = PingResponse

/// `$NEX.AUCTION` request: only nodes matching every given field answer.
public struct AuctionRequest: Codable, Sendable, Equatable {
    public var arch: String?
    public var os: String?
    public var sandboxed: Bool?
    /// Tag values match case-insensitively.
    public var tags: [String: String]?
    public var workloadTypes: [String]?

    public init(
        arch: String? = nil, os: String? = nil, sandboxed: Bool? = nil, tags: [String: String]? = nil,
        workloadTypes: [String]? = nil
    ) {
        self.arch = arch
        self.os = os
        self.sandboxed = sandboxed
        self.tags = tags
        self.workloadTypes = workloadTypes
    }

    enum CodingKeys: String, CodingKey {
        case arch, os, sandboxed, tags
        case workloadTypes = "workload_types"
    }
}

/// One running workload in a `$NEX.WPING` reply.
public struct MachineSummary: Codable, Sendable, Equatable {
    public var id: String
    public var namespace: String
    public var name: String
    public var type: String

    public init(id: String, namespace: String, name: String, type: String) {
        self.id = id
        self.namespace = namespace
        self.name = name
        self.type = type
    }
}

/// `$NEX.WPING.<ns>[.<workload>]` reply data.
public struct WorkloadPingResponse: Codable, Sendable, Equatable {
    public var nodeID: String
    public var targetXkey: String
    public var version: String
    public var tags: [String: String]
    public var uptime: String
    public var runningMachines: [MachineSummary]

    public init(
        nodeID: String, targetXkey: String, version: String, tags: [String: String], uptime: String,
        runningMachines: [MachineSummary]
    ) {
        self.nodeID = nodeID
        self.targetXkey = targetXkey
        self.version = version
        self.tags = tags
        self.uptime = uptime
        self.runningMachines = runningMachines
    }

    enum CodingKeys: String, CodingKey {
        case version, tags, uptime
        case nodeID = "node_id"
        case targetXkey = "target_xkey"
        case runningMachines = "running_machines"
    }
}

/// A workload as INFO describes it.
public struct WorkloadDescription: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var description: String?
    public var essential: Bool?
    public var hash: String
    public var runtime: String
    public var uptime: String
    public var type: String
    /// The public key of the account that deployed it: an extension (Nex omits it), so a redeploy knows which
    /// copies are its own to replace. Absent from nodes that do not send it.
    public var issuer: String?
    /// A function's triggers, with its JetStream consumers' counts: an extension (Nex omits it).
    public var triggers: [TriggerStatus]?

    public init(
        id: String, name: String, description: String?, essential: Bool?, hash: String, runtime: String,
        uptime: String, type: String, issuer: String? = nil, triggers: [TriggerStatus]? = nil
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.essential = essential
        self.hash = hash
        self.runtime = runtime
        self.uptime = uptime
        self.type = type
        self.issuer = issuer
        self.triggers = triggers
    }
}

/// One agent (machine) and its workload in an INFO reply.
public struct MachineInfo: Codable, Sendable, Equatable {
    public var id: String
    public var healthy: Bool
    public var uptime: String
    public var namespace: String
    public var workload: WorkloadDescription

    public init(id: String, healthy: Bool, uptime: String, namespace: String, workload: WorkloadDescription) {
        self.id = id
        self.healthy = healthy
        self.uptime = uptime
        self.namespace = namespace
        self.workload = workload
    }
}

/// Memory of the node's host in kB (from /proc/meminfo).
public struct MemoryStat: Codable, Sendable, Equatable {
    public var total: Int
    public var free: Int
    public var available: Int

    public init(total: Int, free: Int, available: Int) {
        self.total = total
        self.free = free
        self.available = available
    }
}

/// `$NEX.INFO.<ns>.<node>` reply data.
public struct InfoResponse: Codable, Sendable, Equatable {
    /// Warm agents ready for a deploy.
    public var availableAgents: Int
    public var allowDuplicateWorkloads: Bool?
    /// Workloads of the requested namespace only.
    public var machines: [MachineInfo]
    public var memory: MemoryStat?
    public var publicXkey: String
    public var supportedWorkloadTypes: [String]
    public var tags: [String: String]
    public var uptime: String
    public var version: String

    public init(
        availableAgents: Int, allowDuplicateWorkloads: Bool?, machines: [MachineInfo], memory: MemoryStat?,
        publicXkey: String, supportedWorkloadTypes: [String], tags: [String: String], uptime: String, version: String
    ) {
        self.availableAgents = availableAgents
        self.allowDuplicateWorkloads = allowDuplicateWorkloads
        self.machines = machines
        self.memory = memory
        self.publicXkey = publicXkey
        self.supportedWorkloadTypes = supportedWorkloadTypes
        self.tags = tags
        self.uptime = uptime
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case machines, memory, tags, uptime, version
        case availableAgents = "available_agents"
        case allowDuplicateWorkloads = "allow_duplicate_workloads"
        case publicXkey = "public_xkey"
        case supportedWorkloadTypes = "supported_workload_types"
    }
}

/// `$NEX.DEPLOY.<ns>.<node>` reply data.
public struct RunResponse: Codable, Sendable, Equatable {
    /// The workload id.
    public var id: String
    public var issuer: String
    public var name: String
    public var started: Bool

    public init(id: String, issuer: String, name: String, started: Bool) {
        self.id = id
        self.issuer = issuer
        self.name = name
        self.started = started
    }
}

/// `$NEX.STOP.<ns>.<node>` request.
public struct StopRequest: Codable, Sendable, Equatable {
    public var nodeID: String
    public var workloadID: String
    /// A JWT signed by the deploying issuer, `sub` = the workload id.
    public var workloadJWT: String

    public init(nodeID: String, workloadID: String, workloadJWT: String) {
        self.nodeID = nodeID
        self.workloadID = workloadID
        self.workloadJWT = workloadJWT
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case workloadID = "workload_id"
        case workloadJWT = "workload_jwt"
    }
}

/// `$NEX.STOP…` reply data.
public struct StopResponse: Codable, Sendable, Equatable {
    public var id: String
    public var issuer: String
    public var stopped: Bool

    public init(id: String, issuer: String, stopped: Bool) {
        self.id = id
        self.issuer = issuer
        self.stopped = stopped
    }
}

/// `$NEX.LAMEDUCK.<node>` reply data.
public struct LameDuckResponse: Codable, Sendable, Equatable {
    public var nodeID: String
    public var success: Bool

    public init(nodeID: String, success: Bool) {
        self.nodeID = nodeID
        self.success = success
    }

    enum CodingKeys: String, CodingKey {
        case success
        case nodeID = "node_id"
    }
}

/// Reply kinds of the envelope's `type` (`io.nats.nex.v1.<kind>_response`).
public enum ReplyKind {
    public static let ping = "ping"
    public static let info = "info"
    public static let run = "run"
    public static let stop = "stop"
    public static let lameDuck = "lameduck"
    public static let auction = "auction"
}
