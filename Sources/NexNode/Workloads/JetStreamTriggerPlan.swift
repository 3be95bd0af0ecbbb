import Crypto
import Foundation
import NATSJetStream
import NexModels

/// One JetStream trigger of a function as the node runs it: the stream, the durable consumer every copy of
/// the workload shares (same name on every node), and how its messages are delivered, with every default
/// filled in.
struct JetStreamTriggerPlan: Sendable {
    var type: String
    var stream: String
    var consumer: ConsumerConfig
    var maxDeliver: Int
    /// The wait before each retry; the last step repeats. Empty: retry at once.
    var backoff: [Duration]
    var ackWait: Duration
    var maxBatch: Int
    var maxConcurrency: Int
    var deadLetterSubject: String?
    /// For key-value and object-store triggers: the operations that run the function (others are acked).
    var operations: Set<String>?
    /// For a schedule trigger: the schedule the copies keep in ``ScheduleStream``.
    var schedule: PlannedSchedule?

    /// A schedule trigger's schedule, where it is kept, and where its copies are marked.
    struct PlannedSchedule: Sendable {
        var subject: String
        var schedule: MessageSchedule
        var payload: [UInt8]
        var namespace: String
        var name: String
        var index: Int
    }

    /// How long one pull waits for messages: also how long a stop waits for the pull loop to notice it.
    static let pullWait = Duration.seconds(1)

    /// The plan of `trigger`, entry `index` of the triggers of workload `name` in `namespace`; nil for a subject
    /// trigger. The trigger passed ``TriggerValidation`` (its durations parse).
    init?(_ trigger: WorkloadTrigger, index: Int, namespace: String, name: String) {
        guard let delivery = trigger.delivery else { return nil }
        type = trigger.type
        var filter: String?
        switch trigger {
        case .subject:
            return nil
        case .stream(let t):
            stream = t.stream
            filter = t.filterSubject
        case .keyValue(let t):
            stream = "KV_\(t.bucket)"
            filter = "$KV.\(t.bucket).\(t.key ?? ">")"
            operations = Set(t.operations ?? KeyValueTrigger.operationNames)
        case .objectStore(let t):
            stream = "OBJ_\(t.bucket)"
            filter = "$O.\(t.bucket).M.>"
            operations = Set(t.operations ?? ObjectStoreTrigger.operationNames)
        case .schedule(let t):
            stream = ScheduleStream.name
            let target = ScheduleStream.tickSubject(namespace: namespace, name: name, index: index)
            filter = target
            guard let planned = ScheduleStream.schedule(of: t, target: target) else { return nil }
            schedule = PlannedSchedule(
                subject: ScheduleStream.scheduleSubject(namespace: namespace, name: name, index: index),
                schedule: planned, payload: Array((t.payload ?? "").utf8), namespace: namespace, name: name,
                index: index)
        }
        func duration(_ text: String?, _ fallback: String) -> Duration {
            .nanoseconds(GoDuration.parse(text ?? fallback) ?? GoDuration.parse(fallback)!)
        }
        maxDeliver = delivery.maxDeliver ?? TriggerDelivery.Defaults.maxDeliver
        backoff = (delivery.backoff ?? []).map { duration($0, "0s") }
        ackWait = duration(delivery.ackWait, TriggerDelivery.Defaults.ackWait)
        maxBatch = delivery.maxBatch ?? TriggerDelivery.Defaults.maxBatch
        maxConcurrency = delivery.maxConcurrency ?? TriggerDelivery.Defaults.maxConcurrency
        deadLetterSubject = delivery.deadLetterSubject
        var config = ConsumerConfig(
            durableName: Self.durableName(namespace: namespace, name: name, index: index, given: delivery.durable),
            filterSubject: filter, ackPolicy: .explicit)
        config.deliverPolicy = delivery.deliver == "new" ? .new : .all
        config.ackWait = ackWait
        // The server counts deliveries and gives a message up after the last (its advisory then reaches the
        // nodes); the retry ladder is the node's own (no server-side backoff: it would replace ack_wait).
        config.maxDeliver = maxDeliver
        config.maxAckPending = delivery.maxAckPending
        config.inactiveThreshold = duration(delivery.inactiveThreshold, TriggerDelivery.Defaults.inactiveThreshold)
        config.description =
            "nex trigger \(index) of \(namespace)/\(name)" + (delivery.durable.map { " (durable \($0))" } ?? "")
        consumer = config
    }

    /// The consumer every copy of a workload shares for its `index`th trigger, or the one a trigger names
    /// (`given`). Derived from the namespace with a hash that no other namespace's names can make, so a tenant
    /// cannot name (and so join or rewrite) another namespace's consumer: `nex_` and 24 hex digits.
    static func durableName(namespace: String, name: String, index: Int, given: String? = nil) -> String {
        let key = given.map { "\(namespace)\u{0}durable\u{0}\($0)" } ?? "\(namespace)\u{0}\(name)\u{0}\(index)"
        return "nex_" + SHA256.hash(data: Array(key.utf8)).prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    var durable: String { consumer.durableName ?? "" }

    /// The wait before the retry that follows delivery number `delivered` (1 for the first); nil: at once.
    func retryDelay(afterDelivery delivered: UInt64) -> Duration? {
        guard !backoff.isEmpty else { return nil }
        return backoff[min(Int(delivered) - 1, backoff.count - 1)]
    }
}
