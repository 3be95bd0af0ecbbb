import ArgumentParser
import Foundation
import NexModels

/// A function's JetStream triggers as flags (docs/triggers.md): a stream, a key-value or object-store watch,
/// a schedule, and the delivery settings they share.
struct TriggerOptions: ParsableArguments {
    @Option(help: "Trigger on the messages of this JetStream stream.")
    var stream: String?

    @Option(help: "With --stream: only messages on this subject (wildcards allowed).")
    var filter: String?

    @Option(name: .customLong("kv-watch"), help: "Trigger on changes of a key-value bucket: BUCKET or BUCKET/KEYS.")
    var kvWatch: String?

    @Option(name: .customLong("os-watch"), help: "Trigger on objects put into or deleted from an object store.")
    var osWatch: String?

    @Option(help: "Trigger on a schedule: six cron fields, seconds first (\"0 */5 * * * *\").")
    var cron: String?

    @Option(help: "With --cron: an IANA time zone (default UTC).")
    var timezone: String?

    @Option(help: "Trigger every DURATION (at least 1s: \"10s\", \"1m30s\").")
    var every: String?

    @Option(help: "The consumer every copy shares (default: from the namespace and workload name).")
    var durable: String?

    @Option(name: .customLong("max-deliver"), help: "Deliveries before a message is dead-lettered (default 5).")
    var maxDeliver: Int?

    @Option(help: "Waits before the retries, comma-separated (\"1s,5s\"; at most max-deliver - 1 steps).")
    var backoff: String?

    @Option(name: .customLong("dead-letter"), help: "Where a message that keeps failing is published.")
    var deadLetter: String?

    @Option(
        name: .customLong("ack-wait"),
        help: "How long a message of a node that died waits before another copy gets it (default 30s).")
    var ackWait: String?

    @Option(name: .customLong("max-batch"), help: "Messages asked for per pull (default 1).")
    var maxBatch: Int?

    @Option(name: .customLong("max-concurrency"), help: "Trigger messages in flight per copy (default 1).")
    var maxConcurrency: Int?

    /// The delivery settings the flags give.
    var delivery: TriggerDelivery {
        var d = TriggerDelivery()
        d.durable = durable
        d.maxDeliver = maxDeliver
        d.backoff = backoff.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        d.deadLetterSubject = deadLetter
        d.ackWait = ackWait
        d.maxBatch = maxBatch
        d.maxConcurrency = maxConcurrency
        return d
    }

    /// The triggers the flags ask for (each with the same delivery settings).
    var triggers: [WorkloadTrigger] {
        var list: [WorkloadTrigger] = []
        if let stream { list.append(.stream(StreamTrigger(stream: stream, filterSubject: filter, delivery: delivery))) }
        if let kvWatch, let bucket = kvWatch.split(separator: "/", maxSplits: 1).first {
            let key = kvWatch.dropFirst(bucket.count + 1)
            list.append(
                .keyValue(
                    KeyValueTrigger(bucket: String(bucket), key: key.isEmpty ? nil : String(key), delivery: delivery)))
        }
        if let osWatch { list.append(.objectStore(ObjectStoreTrigger(bucket: osWatch, delivery: delivery))) }
        if cron != nil || every != nil {
            list.append(.schedule(ScheduleTrigger(cron: cron, every: every, timezone: timezone, delivery: delivery)))
        }
        return list
    }

    func validate() throws {
        if cron != nil, every != nil { throw ValidationError("--cron and --every contradict each other: give one") }
        if timezone != nil, cron == nil { throw ValidationError("--timezone goes with --cron") }
        if filter != nil, stream == nil { throw ValidationError("--filter goes with --stream") }
        if let kvWatch, kvWatch.hasPrefix("/") || kvWatch.isEmpty {
            throw ValidationError("--kv-watch takes BUCKET or BUCKET/KEYS, not \"\(kvWatch)\"")
        }
        if triggers.isEmpty, delivery != TriggerDelivery() {
            throw ValidationError(
                "--durable, --max-deliver, --backoff, --dead-letter, --ack-wait, --max-batch and --max-concurrency go with "
                    + "--stream, --kv-watch, --os-watch, --cron or --every")
        }
        if let cron, !cron.hasPrefix("@"), cron.split(whereSeparator: \.isWhitespace).count != 6 {
            throw ValidationError(
                "--cron takes six fields, seconds first (\"0 */5 * * * *\" is every five minutes); \"\(cron)\" has "
                    + "\(cron.split(whereSeparator: \.isWhitespace).count)")
        }
    }
}
