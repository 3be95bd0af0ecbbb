import NATSJetStream
import NATSProtocol
import NexModels

/// The checks of a deploy's `triggers` that need no server: each refusal names the entry (`triggers[2]`) and
/// what to change.
struct TriggerValidation {
    var policy: SubjectPolicy
    var namespace: String
    /// Told of every subject the subject policy refuses (the node counts them).
    var subjectRefused: @Sendable (SubjectRefusal) -> Void

    /// The most messages one pull asks for, and the most a copy runs at once.
    static let maxBatch = 256
    static let maxConcurrency = 256

    func refusal(for triggers: [WorkloadTrigger]) -> NexError? {
        for (index, trigger) in triggers.enumerated() {
            if let problem = problem(with: trigger) {
                if case .policy(let refusal) = problem {
                    subjectRefused(refusal)
                    return refusal.nexError
                }
                if case .invalid(let text) = problem {
                    return NexError(.invalidRequest, "triggers[\(index)] (\(trigger.type)): \(text)")
                }
            }
        }
        return nil
    }

    private enum Problem {
        case invalid(String)
        case policy(SubjectRefusal)
    }

    private func problem(with trigger: WorkloadTrigger) -> Problem? {
        switch trigger {
        case .subject(let t):
            guard SubjectValidation.isValidSubscribeSubject(t.subject) else {
                return .invalid("\"\(t.subject)\" is not a subject to subscribe to")
            }
            if let queue = t.queue, !SubjectValidation.isValidQueueName(queue) {
                return .invalid("\"\(queue)\" is not a queue group name")
            }
            return policy.refusal(for: t.subject, namespace: namespace, use: .trigger).map(Problem.policy)
        case .stream(let t):
            guard Self.isStreamName(t.stream) else {
                return .invalid("\"\(t.stream)\" is not a stream name (letters, digits, - and _)")
            }
            if let filter = t.filterSubject {
                guard SubjectValidation.isValidSubscribeSubject(filter) else {
                    return .invalid("filter_subject \"\(filter)\" is not a subject")
                }
                if let refusal = policy.refusal(for: filter, namespace: namespace, use: .trigger) {
                    return .policy(refusal)
                }
            }
            return problem(with: t.delivery)
        case .keyValue(let t):
            guard Self.isStreamName(t.bucket) else { return .invalid("\"\(t.bucket)\" is not a bucket name") }
            if let key = t.key, !SubjectValidation.isValidSubscribeSubject(key) {
                return .invalid("key \"\(key)\" is not a key or key pattern (`feature.>`)")
            }
            if let bad = t.operations?.first(where: { !KeyValueTrigger.operationNames.contains($0) }) {
                return .invalid(
                    "operation \"\(bad)\" is not one of \(KeyValueTrigger.operationNames.joined(separator: ", "))")
            }
            let subject = "$KV.\(t.bucket).\(t.key ?? ">")"
            if let refusal = policy.refusal(for: subject, namespace: namespace, use: .trigger) {
                return .policy(refusal)
            }
            return problem(with: t.delivery)
        case .objectStore(let t):
            guard Self.isStreamName(t.bucket) else { return .invalid("\"\(t.bucket)\" is not a bucket name") }
            if let bad = t.operations?.first(where: { !ObjectStoreTrigger.operationNames.contains($0) }) {
                return .invalid(
                    "operation \"\(bad)\" is not one of \(ObjectStoreTrigger.operationNames.joined(separator: ", "))")
            }
            if let refusal = policy.refusal(for: "$O.\(t.bucket).M.>", namespace: namespace, use: .trigger) {
                return .policy(refusal)
            }
            return problem(with: t.delivery)
        case .schedule(let t):
            switch (t.cron, t.every) {
            case (nil, nil), (.some, .some):
                return .invalid("give either every (\"10s\") or cron (six fields, seconds first)")
            case (let cron?, nil):
                let fields = cron.split(whereSeparator: \.isWhitespace)
                let named = fields.count == 1 && MessageSchedule.cronNames.contains(cron)
                guard fields.count == 6 || named else {
                    return .invalid(
                        "cron has six fields, seconds first (\"0 */5 * * * *\" is every five minutes); \"\(cron)\" "
                            + "has \(fields.count)")
                }
                if let zone = t.timezone, zone.isEmpty || zone.contains(where: \.isWhitespace) {
                    return .invalid("timezone \"\(zone)\" is not an IANA zone name (\"Europe/Amsterdam\")")
                }
            case (nil, let every?):
                guard let ns = GoDuration.parse(every), ns >= 1_000_000_000 else {
                    return .invalid("every is a duration of at least 1s (\"10s\", \"1m30s\"), not \"\(every)\"")
                }
                if t.timezone != nil { return .invalid("timezone goes with cron, not every") }
            }
            return problem(with: t.delivery)
        }
    }

    /// The delivery fields' checks.
    private func problem(with d: TriggerDelivery) -> Problem? {
        if let durable = d.durable, !Self.isStreamName(durable) {
            return .invalid("durable \"\(durable)\" is not a consumer name (letters, digits, - and _)")
        }
        if let deliver = d.deliver, !["all", "new"].contains(deliver) {
            return .invalid("deliver is all or new, not \"\(deliver)\"")
        }
        let maxDeliver = d.maxDeliver ?? TriggerDelivery.Defaults.maxDeliver
        guard maxDeliver >= 1 else { return .invalid("max_deliver is at least 1, not \(maxDeliver)") }
        for (field, text) in [("ack_wait", d.ackWait), ("inactive_threshold", d.inactiveThreshold)] {
            if let text, (GoDuration.parse(text) ?? 0) < 1_000_000_000 {
                return .invalid("\(field) is a duration of at least 1s (\"30s\"), not \"\(text)\"")
            }
        }
        if let steps = d.backoff {
            if let bad = steps.first(where: { (GoDuration.parse($0) ?? -1) < 0 }) {
                return .invalid("backoff step \"\(bad)\" is not a duration (\"1s\", \"5s\")")
            }
            guard steps.count <= maxDeliver - 1 else {
                return .invalid(
                    "backoff has \(steps.count) steps, but max_deliver \(maxDeliver) leaves \(maxDeliver - 1) retries: "
                        + "raise max_deliver or drop steps")
            }
        }
        for (field, value, limit) in [
            ("max_batch", d.maxBatch, Self.maxBatch), ("max_concurrency", d.maxConcurrency, Self.maxConcurrency),
            ("max_ack_pending", d.maxAckPending, Int.max),
        ] {
            if let value, value < 1 || value > limit {
                return .invalid(
                    "\(field) is from 1 to \(limit == Int.max ? "any number" : String(limit)), not \(value)")
            }
        }
        if let dead = d.deadLetterSubject {
            guard SubjectValidation.isValidPublishSubject(dead) else {
                return .invalid("dead_letter_subject \"\(dead)\" is not a subject to publish to")
            }
            if let refusal = policy.refusal(for: dead, namespace: namespace, use: .publish) {
                return .policy(refusal)
            }
        }
        return nil
    }

    /// A stream, bucket or consumer name: letters, digits, `-` and `_`.
    static func isStreamName(_ name: String) -> Bool {
        !name.isEmpty
            && name.unicodeScalars.allSatisfy { c in
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
            }
    }
}
