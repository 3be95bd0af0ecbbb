import Foundation
import Logging
import NATS
import NexModels
import Synchronization

/// Publishes the node's CloudEvents and workload logs on the control connection. A publish that fails is
/// logged and counted (``PublishFailures``), never dropped silently.
struct EventPublisher: Sendable {
    let client: NATSClient
    let nodeID: String
    let failures: PublishFailures
    let logger: Logger

    /// `$NEX.events.<namespace>.<type>`.
    nonisolated(nonsending) func publish<T: Codable & Sendable>(
        _ type: String, _ data: T, namespace: String = NexSubjects.systemNamespace
    ) async {
        let event = CloudEvent(id: EventID.random(), source: nodeID, type: type, data: data)
        do {
            let body = try JSONEncoder().encode(event)
            try await client.publish(Array(body), to: NexSubjects.event(namespace: namespace, type: type))
        } catch {
            let count = failures.events.add(1, ordering: .relaxed).newValue
            logger.warning(
                "cannot publish an event",
                metadata: ["event": "\(type)", "error": "\(error)", "failed_events": "\(count)"])
        }
    }

    /// A function's `function_exec_succeeded` or `function_exec_failed` (one per trigger: encoded by hand).
    nonisolated(nonsending) func publishExec(_ data: FunctionExecEvent) async {
        let type = data.error == nil ? NexEventType.functionExecSucceeded : NexEventType.functionExecFailed
        let event = CloudEvent(id: EventID.random(), source: nodeID, type: type, data: data)
        do {
            try await client.publish(event.jsonBytes(), to: NexSubjects.event(namespace: data.namespace, type: type))
        } catch {
            let count = failures.events.add(1, ordering: .relaxed).newValue
            logger.warning(
                "cannot publish an event",
                metadata: ["event": "\(type)", "error": "\(error)", "failed_events": "\(count)"])
        }
    }

    /// Forwards an agent's log entry (already JSON) to the workload's log subject.
    func log(_ body: [UInt8], namespace: String, workloadName: String, workloadID: String) async {
        let subject = NexSubjects.logs(
            namespace: namespace, node: nodeID, workloadName: workloadName, workloadID: workloadID)
        do { try await client.publish(body, to: subject) } catch {
            let (count, worthALine) = failures.logLost()
            if worthALine {
                logger.warning(
                    "cannot forward workload logs",
                    metadata: ["nex.workload_id": "\(workloadID)", "error": "\(error)", "failed_logs": "\(count)"])
            }
        }
    }
}

/// How many event and log publishes failed since the node started (log lines dropped before a publish
/// because too many were waiting count as failed logs).
final class PublishFailures: Sendable {
    let events = Atomic<Int>(0)
    let logs = Atomic<Int>(0)

    /// Counts a lost log line: the count so far, and whether to say so (the first of a run of them and every
    /// thousandth are worth a line; every one is counted).
    func logLost() -> (count: Int, worthALine: Bool) {
        let count = logs.add(1, ordering: .relaxed).newValue
        return (count, count == 1 || count % 1000 == 0)
    }
}
