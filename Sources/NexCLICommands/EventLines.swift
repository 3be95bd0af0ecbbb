import Foundation
import NexControlClient
import NexModels

/// Nex events as readable lines: time, namespace, type, workload and the facts that matter for the type.
enum EventLines {
    /// Every event type of the contract.
    static let types = [
        NexEventType.nodeStarted, NexEventType.nodeStopped, NexEventType.nodeEnteredLameDuck, NexEventType.heartbeat,
        NexEventType.workloadDeployed, NexEventType.workloadUndeployed, NexEventType.functionExecSucceeded,
        NexEventType.functionExecFailed,
    ]

    /// `15:04:05.123  default  workload_undeployed  echoservice (1f2e…)  code 1: cannot connect`.
    static func line(for event: NexEvent) -> String {
        let envelope = try? event.decode(Empty.self)  // only the time: a missing one shows as "-"
        let time = envelope.flatMap { ISO8601.date($0.time) }.map(Output.clock) ?? "-"
        return [time, event.namespace, event.type, facts(of: event)].joined(separator: "  ")
    }

    private struct Empty: Codable, Sendable {}

    private static func facts(of event: NexEvent) -> String {
        switch event.type {
        case NexEventType.workloadDeployed, NexEventType.workloadUndeployed:
            guard let e = try? event.decode(WorkloadEvent.self).data else { break }  // another shape: raw JSON
            var text = "\(e.workloadName) (\(e.workloadID.prefix(8)))"
            if event.type == NexEventType.workloadUndeployed { text += "  code \(e.code)" }
            if !e.message.isEmpty { text += ": \(e.message)" }
            return text
        case NexEventType.functionExecSucceeded, NexEventType.functionExecFailed:
            guard let e = try? event.decode(FunctionExecEvent.self).data else { break }  // another shape: raw JSON
            let took = e.elapsedNanos.map { "  \(GoDuration.format(nanoseconds: $0))" } ?? ""
            return "\(e.workloadName) (\(e.workloadID.prefix(8)))  \(e.triggerSubject)\(took)"
                + (e.error.map { "  error: \($0)" } ?? "")
        case NexEventType.heartbeat:
            guard let e = try? event.decode(HeartbeatEvent.self).data else { break }  // another shape: raw JSON
            return "node \(e.nodeID.prefix(12))…  \(e.runningMachines) workloads  up \(GoDuration.human(e.uptime))"
        case NexEventType.nodeStarted:
            guard let e = try? event.decode(NodeStartedEvent.self).data else { break }  // another shape: raw JSON
            return "node \(e.id)  version \(e.version)"
        case NexEventType.nodeStopped:
            guard let e = try? event.decode(NodeStoppedEvent.self).data else { break }  // another shape: raw JSON
            return "node \(e.id)" + (e.graceful ? "" : "  (not graceful)")
        case NexEventType.nodeEnteredLameDuck:
            guard let e = try? event.decode(LameDuckEvent.self).data else { break }  // another shape: raw JSON
            return "node \(e.id)"
        default: break
        }
        return String(decoding: event.json, as: UTF8.self)
    }
}

/// RFC 3339 times, with or without fractional seconds.
enum ISO8601 {
    static func date(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)))  // or without
            ?? (try? Date(text, strategy: .iso8601))  // neither: no time to show
    }
}
