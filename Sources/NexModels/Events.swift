import Foundation

/// A CloudEvents 1.0 envelope as Nex publishes it on `$NEX.events.<ns>.<type>`.
public struct CloudEvent<Payload: Codable & Sendable>: Codable, Sendable {
    public var specVersion = "1.0"
    public var id: String
    /// The node's public key.
    public var source: String
    /// One of ``NexEventType``.
    public var type: String
    /// RFC 3339.
    public var time: String
    public var dataContentType = "application/json"
    public var data: Payload

    public init(id: String, source: String, type: String, time: Date = Date(), data: Payload) {
        self.id = id
        self.source = source
        self.type = type
        self.time = Self.rfc3339(time)
        self.data = data
    }

    enum CodingKeys: String, CodingKey {
        case id, source, type, time, data
        case specVersion = "specversion"
        case dataContentType = "datacontenttype"
    }

    /// `2026-11-21T15:21:57.123Z`. Formatted by hand: a new ISO8601DateFormatter costs about 75 µs on
    /// Linux, and every function trigger publishes an event.
    static func rfc3339(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = min(Int((interval - Double(seconds)) * 1000), 999)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}

/// Event ids.
public enum EventID {
    /// A new random (version 4) UUID for an event's `id`. Foundation's `UUID()` opens, reads and closes
    /// /dev/urandom each time (3.6 µs here, on every function trigger); this asks `getrandom` twice (1.1 µs).
    public static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        var bits = (generator.next() as UInt64, generator.next() as UInt64)
        return withUnsafeMutableBytes(of: &bits) { b in
            b[6] = (b[6] & 0x0F) | 0x40  // version 4
            b[8] = (b[8] & 0x3F) | 0x80  // RFC 4122 variant
            return UUID(
                uuid: (
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
                )
            ).uuidString
        }
    }
}

/// The event types of the wire contract (§2).
public enum NexEventType {
    public static let nodeStarted = "node_started"
    public static let nodeStopped = "node_stopped"
    public static let nodeEnteredLameDuck = "node_entered_lameduck"
    public static let heartbeat = "heartbeat"
    public static let workloadDeployed = "workload_deployed"
    public static let workloadUndeployed = "workload_undeployed"
    public static let functionExecSucceeded = "function_exec_succeeded"
    public static let functionExecFailed = "function_exec_failed"
}

/// `node_started` data.
public struct NodeStartedEvent: Codable, Sendable, Equatable {
    public var version: String
    public var id: String
    public var tags: [String: String]
    public var publicXkey: String

    public init(version: String, id: String, tags: [String: String], publicXkey: String) {
        self.version = version
        self.id = id
        self.tags = tags
        self.publicXkey = publicXkey
    }

    enum CodingKeys: String, CodingKey {
        case version, id, tags
        case publicXkey = "public_xkey"
    }
}

/// `node_stopped` data.
public struct NodeStoppedEvent: Codable, Sendable, Equatable {
    public var id: String
    public var graceful: Bool

    public init(id: String, graceful: Bool) {
        self.id = id
        self.graceful = graceful
    }
}

/// `node_entered_lameduck` data.
public struct LameDuckEvent: Codable, Sendable, Equatable {
    public var version: String
    public var id: String

    public init(version: String, id: String) {
        self.version = version
        self.id = id
    }
}

/// `heartbeat` data (every 30 s).
public struct HeartbeatEvent: Codable, Sendable, Equatable {
    public var allowDuplicateWorkloads: Bool
    public var nexus: String?
    public var nodeID: String
    public var runningMachines: Int
    public var tags: [String: String]
    public var uptime: String
    public var publicXkey: String
    public var version: String

    public init(
        allowDuplicateWorkloads: Bool, nexus: String?, nodeID: String, runningMachines: Int, tags: [String: String],
        uptime: String, publicXkey: String, version: String
    ) {
        self.allowDuplicateWorkloads = allowDuplicateWorkloads
        self.nexus = nexus
        self.nodeID = nodeID
        self.runningMachines = runningMachines
        self.tags = tags
        self.uptime = uptime
        self.publicXkey = publicXkey
        self.version = version
    }

    enum CodingKeys: String, CodingKey {
        case nexus, tags, uptime, version
        case allowDuplicateWorkloads = "allow_duplicate_workloads"
        case nodeID = "node_id"
        case runningMachines = "running_machines"
        case publicXkey = "public_xkey"
    }
}

/// `workload_deployed` / `workload_undeployed` data (`code` is the exit code when a workload exited).
public struct WorkloadEvent: Codable, Sendable, Equatable {
    public var code: Int
    public var message: String
    public var workloadID: String
    public var workloadName: String
    public var essential: Bool
    public var totalBytes: Int

    public init(code: Int, message: String, workloadID: String, workloadName: String, essential: Bool, totalBytes: Int)
    {
        self.code = code
        self.message = message
        self.workloadID = workloadID
        self.workloadName = workloadName
        self.essential = essential
        self.totalBytes = totalBytes
    }

    enum CodingKeys: String, CodingKey {
        case code, message, essential
        case workloadID = "workload_id"
        case workloadName = "workload_name"
        case totalBytes = "total_bytes"
    }
}

/// `function_exec_succeeded` / `function_exec_failed` data.
public struct FunctionExecEvent: Codable, Sendable, Equatable {
    public var workloadID: String
    public var workloadName: String
    public var namespace: String
    public var triggerSubject: String
    /// Set on success.
    public var elapsedNanos: Int64?
    /// Set on failure.
    public var error: String?

    public init(
        workloadID: String, workloadName: String, namespace: String, triggerSubject: String, elapsedNanos: Int64? = nil,
        error: String? = nil
    ) {
        self.workloadID = workloadID
        self.workloadName = workloadName
        self.namespace = namespace
        self.triggerSubject = triggerSubject
        self.elapsedNanos = elapsedNanos
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case namespace, error
        case workloadID = "workload_id"
        case workloadName = "workload_name"
        case triggerSubject = "trigger_subject"
        case elapsedNanos = "elapsed_nanos"
    }
}

/// A log line on `$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`.
public struct LogEntry: Codable, Sendable, Equatable {
    public var text: String
    /// -4 debug, 0 info (workload stdout), 4 warn, 8 error (workload stderr).
    public var level: Int
    /// The workload id.
    public var id: String

    public init(text: String, level: Int, id: String) {
        self.text = text
        self.level = level
        self.id = id
    }

    public static let debug = -4
    public static let info = 0
    public static let warn = 4
    public static let error = 8
}
