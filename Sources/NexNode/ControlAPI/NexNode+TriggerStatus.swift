import NATSJetStream
import NexModels

extension NexNode {
    /// How long INFO waits for a JetStream trigger's consumer counts: a node answers INFO even when JetStream
    /// is slow (the counts are then left out).
    static let triggerCountsTimeout = Duration.seconds(2)

    /// A function's triggers as INFO shows them (nil for a workload without any). The counts of its stream,
    /// key-value, object-store and schedule triggers come from their shared consumers, asked at once.
    func triggerStatuses(_ record: WorkloadRecord) async -> [TriggerStatus]? {
        let triggers =
            (record.request.triggerSubjects ?? []).map { WorkloadTrigger.subject(SubjectTrigger(subject: $0)) }
            + (record.request.triggers ?? [])
        guard !triggers.isEmpty else { return nil }
        let js = JetStreamContext(client: client, timeout: Self.triggerCountsTimeout)
        let offset = record.request.triggerSubjects?.count ?? 0
        return await withTaskGroup(of: (Int, TriggerStatus).self) { group in
            for (position, trigger) in triggers.enumerated() {
                group.addTask {
                    var status = TriggerStatus(type: trigger.type, source: trigger.source)
                    // A plan's index counts the `triggers` list only, as the running copies do.
                    guard position >= offset,
                        let plan = JetStreamTriggerPlan(
                            trigger, index: position - offset, namespace: record.namespace, name: record.name)
                    else { return (position, status) }
                    status.consumer = plan.durable
                    do {
                        let info = try await js.consumerInfo(stream: plan.stream, name: plan.durable)
                        status.pending = info.pending
                        status.ackPending = info.pendingAcks
                        status.redelivered = info.redelivered
                    } catch {
                        // Left out: a consumer not made yet, or JetStream too slow to ask now.
                    }
                    return (position, status)
                }
            }
            var statuses = [TriggerStatus?](repeating: nil, count: triggers.count)
            for await (position, status) in group { statuses[position] = status }
            return statuses.compactMap { $0 }
        }
    }
}
