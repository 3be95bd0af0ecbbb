import Foundation
import NATS
import NexModels

/// Publishes the node's CloudEvents and workload logs on the control connection.
struct EventPublisher: Sendable {
    let client: NATSClient
    let nodeID: String

    /// `$NEX.events.<namespace>.<type>`.
    nonisolated(nonsending) func publish<T: Codable & Sendable>(
        _ type: String, _ data: T, namespace: String = NexSubjects.systemNamespace
    ) async {
        let event = CloudEvent(id: UUID().uuidString, source: nodeID, type: type, data: data)
        guard let body = try? JSONEncoder().encode(event) else { return }
        try? await client.publish(Array(body), to: NexSubjects.event(namespace: namespace, type: type))
    }

    /// Forwards an agent's log entry (already JSON) to the workload's log subject.
    func log(_ body: [UInt8], namespace: String, workloadName: String, workloadID: String) async {
        try? await client.publish(
            body,
            to: NexSubjects.logs(namespace: namespace, node: nodeID, workloadName: workloadName, workloadID: workloadID)
        )
    }
}
