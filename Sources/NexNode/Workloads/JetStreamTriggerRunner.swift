import Foundation
import Logging
import NATS
import NATSJetStream
import NexAgentLink
import NexModels
import Synchronization

/// Runs one JetStream trigger of one copy of a function: pulls from the durable consumer that every copy
/// shares (pulls sized to the free slots of `max_concurrency`), hands each message to the function, and then
/// acknowledges it (confirmed), retries it (`nak` with the next backoff step) or dead-letters it. Work that
/// takes long keeps its message in progress. One loop task, owned here: ``drain()`` stops the pulls, lets
/// the messages in flight finish, and waits for it.
final class JetStreamTriggerRunner: Sendable {
    let plan: JetStreamTriggerPlan
    private let js: JetStreamContext
    private let consumer: Consumer
    private let workload: FunctionTarget
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        var stopping = false
        var running = 0
        var loop: Task<Void, Never>?
        var advisories: NATSSubscription?
        /// Told when a message in flight is done (a slot is free).
        var freed: AsyncStream<Void>.Continuation?
    }

    /// How long the function may take for one message.
    static let callTimeout = Duration.seconds(60)

    private init(
        plan: JetStreamTriggerPlan, js: JetStreamContext, consumer: Consumer, workload: FunctionTarget,
        logger: Logger
    ) {
        self.plan = plan
        self.js = js
        self.consumer = consumer
        self.workload = workload
        self.logger = logger
    }

    /// Creates (or joins) the trigger's consumer and starts pulling. The refusal says what to fix: a stream
    /// that does not exist, a work-queue stream another consumer already reads, a consumer of that name made
    /// with other settings.
    static func start(
        _ plan: JetStreamTriggerPlan, workload: FunctionTarget, client: NATSClient, policy: SubjectPolicy,
        logger: Logger
    ) async throws(NexError) -> JetStreamTriggerRunner {
        let js = JetStreamContext(client: client)
        if plan.consumer.filterSubject == nil {
            try await checkStreamSubjects(plan, namespace: workload.namespace, policy: policy, js)
        }
        if let schedule = plan.schedule { try await keep(schedule, copy: workload.id, js) }
        let consumer: Consumer
        do {
            consumer = try await js.createOrUpdateConsumer(stream: plan.stream, config: plan.consumer)
        } catch {
            if let schedule = plan.schedule { await release(schedule, copy: workload.id, js, logger) }
            if let e = error as? JetStreamError { throw refusal(plan, e) }
            throw NexError(.unavailable, "cannot make the \(plan.type) trigger's consumer on \(plan.stream): \(error)")
        }
        var logger = logger
        logger[metadataKey: "nex.trigger.stream"] = "\(plan.stream)"
        logger[metadataKey: "nex.trigger.consumer"] = "\(plan.durable)"
        let runner = JetStreamTriggerRunner(plan: plan, js: js, consumer: consumer, workload: workload, logger: logger)
        do {
            try await runner.followGivenUpMessages(client)
        } catch {
            throw NexError(.unavailable, "cannot follow the \(plan.type) trigger's advisories: \(error)")
        }
        runner.startLoop()
        return runner
    }

    /// A trigger without a filter reads every subject of its stream: each must pass the subject policy, as a
    /// filter would (else a stream trigger on `KV_<bucket>` would read a bucket that `$KV` keeps from tenants).
    private static func checkStreamSubjects(
        _ plan: JetStreamTriggerPlan, namespace: String, policy: SubjectPolicy, _ js: JetStreamContext
    ) async throws(NexError) {
        let subjects: [String]
        do {
            subjects = try await js.streamInfo(plan.stream).config.subjects ?? []
        } catch let e as JetStreamError {
            throw refusal(plan, e)
        } catch {
            throw NexError(.unavailable, "cannot read stream \(plan.stream): \(error)")
        }
        guard !subjects.isEmpty else {
            throw NexError(
                .invalidRequest,
                "stream \(plan.stream) has no subjects of its own (a mirror or a sourced stream): give the trigger a "
                    + "filter_subject")
        }
        for subject in subjects {
            if let refusal = policy.refusal(for: subject, namespace: namespace, use: .trigger) {
                throw NexError(
                    refusal.nexError.code,
                    "stream \(plan.stream) holds \(subject), which this namespace may not read: \(refusal.description)")
            }
        }
    }

    private static func refusal(_ plan: JetStreamTriggerPlan, _ e: JetStreamError) -> NexError {
        switch e.errorCode {
        case JetStreamError.Known.streamNotFound:
            let what =
                switch plan.type {
                case "kv": "key-value bucket \(plan.stream.dropFirst(3))"
                case "object_store": "object store \(plan.stream.dropFirst(4))"
                default: "stream \(plan.stream)"
                }
            return NexError(.notFound, "the \(what) does not exist: create it first, or name another in the trigger")
        case 10100, 10099:
            return NexError(
                .refused,
                "stream \(plan.stream) is a work queue and another consumer already reads these subjects (\(e.description)): "
                    + "give the trigger a filter_subject no other consumer has, or use that consumer's durable")
        default:
            return NexError(
                .refused,
                "the \(plan.type) trigger's consumer \(plan.durable) on \(plan.stream) was refused: \(e.description)")
        }
    }

    /// Stops pulling, lets the messages in flight finish (and be acknowledged), and waits for that. A copy
    /// that ran a schedule unmarks itself, and the last one removes the schedule (a node that restarts marks
    /// its copies and stores the schedule again).
    func drain() async {
        let (loop, advisories) = state.withLock { s in
            s.stopping = true
            s.freed?.yield()  // wakes a loop that waits for a slot
            return (s.loop, s.advisories)
        }
        advisories?.unsubscribeNow()
        await loop?.value
        if let schedule = plan.schedule { await Self.release(schedule, copy: workload.id, js, logger) }
    }

    // MARK: Schedules

    /// Stores the schedule again if it went missing or changed (another copy's stop may have removed it).
    private func checkSchedule(_ planned: JetStreamTriggerPlan.PlannedSchedule) async {
        do {
            let update = try await js.ensureSchedule(
                planned.schedule, on: planned.subject, in: ScheduleStream.name, payload: planned.payload)
            if case .published = update {
                logger.info("the schedule was missing: stored again", metadata: ["nats.subject": "\(planned.subject)"])
            }
        } catch {
            logger.warning(
                "the schedule could not be checked; checked again later",
                metadata: ["error": "\(error)", "nats.subject": "\(planned.subject)"])
        }
    }

    /// Marks this copy as one that runs the schedule, then stores the schedule unless the stream already holds
    /// it unchanged (re-storing it would restart an `@every` interval).
    private static func keep(_ planned: JetStreamTriggerPlan.PlannedSchedule, copy: String, _ js: JetStreamContext)
        async throws(NexError)
    {
        do {
            try await ScheduleStream.ensure(js)
            _ = try await js.publish(
                [UInt8](),
                to: ScheduleStream.copySubject(
                    namespace: planned.namespace, name: planned.name, index: planned.index, workloadID: copy))
            _ = try await js.ensureSchedule(
                planned.schedule, on: planned.subject, in: ScheduleStream.name, payload: planned.payload)
        } catch let e as JetStreamError where e.errorCode == 10223 {
            throw NexError(
                .invalidRequest, "the schedule's timezone is not one the NATS server knows: \(e.description)")
        } catch let e as JetStreamError where (10188...10192).contains(e.errorCode) {
            throw NexError(.invalidRequest, "the NATS server refused the schedule: \(e.description)")
        } catch {
            throw NexError(
                .unavailable,
                "cannot keep the schedule in stream \(ScheduleStream.name) (message schedules need nats-server 2.12, "
                    + "cron 2.14): \(error)")
        }
    }

    /// This copy no longer runs the schedule; the last copy to go removes it. (A copy that starts at that very
    /// moment may find the schedule gone after it stored it: every copy checks it again every
    /// ``scheduleCheckInterval``.)
    private static func release(
        _ planned: JetStreamTriggerPlan.PlannedSchedule, copy: String, _ js: JetStreamContext, _ logger: Logger
    ) async {
        do {
            try await js.purgeStream(
                ScheduleStream.name,
                subject: ScheduleStream.copySubject(
                    namespace: planned.namespace, name: planned.name, index: planned.index, workloadID: copy))
            let left = try await js.subjectCounts(
                stream: ScheduleStream.name,
                filter: ScheduleStream.copiesFilter(
                    namespace: planned.namespace, name: planned.name, index: planned.index))
            if left.isEmpty {
                try await js.removeSchedule(on: planned.subject, in: ScheduleStream.name)
                logger.info(
                    "the last copy stopped: its schedule is removed", metadata: ["nats.subject": "\(planned.subject)"])
            }
        } catch {
            logger.warning(
                "the schedule could not be released; its ticks go on (at most one waits while no copy runs)",
                metadata: ["error": "\(error)", "nats.subject": "\(planned.subject)"])
        }
    }

    // MARK: The pull loop

    private func startLoop() {
        let (freed, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        state.withLock { $0.freed = signal }
        let task = Task { await self.pullLoop(freed) }
        state.withLock { $0.loop = task }
    }

    /// How often a copy checks that its schedule is still kept.
    static let scheduleCheckInterval = Duration.seconds(10)

    private func pullLoop(_ freed: AsyncStream<Void>) async {
        var slotFreed = freed.makeAsyncIterator()
        var nextScheduleCheck = ContinuousClock.now + Self.scheduleCheckInterval
        var failedPulls = 0
        await withDiscardingTaskGroup { group in
            while true {
                let (stopping, running) = state.withLock { ($0.stopping, $0.running) }
                if stopping { break }
                if let planned = plan.schedule, ContinuousClock.now >= nextScheduleCheck {
                    nextScheduleCheck = ContinuousClock.now + Self.scheduleCheckInterval
                    await checkSchedule(planned)
                }
                let free = plan.maxConcurrency - running
                if free <= 0 {
                    _ = await slotFreed.next()
                    continue
                }
                let batch: [JetStreamMessage]
                do {
                    batch = try await consumer.fetch(min(free, plan.maxBatch), expires: JetStreamTriggerPlan.pullWait)
                    failedPulls = 0
                } catch {
                    // A server restarting fails a few; a consumer deleted by hand fails them all: said every 20.
                    if failedPulls % 20 == 0 {
                        logger.warning(
                            "pulls fail; pulling again",
                            metadata: ["error": "\(error)", "failed": "\(failedPulls + 1)"])
                    }
                    failedPulls += 1
                    do { try await Task.sleep(for: .milliseconds(500)) } catch { break }
                    continue
                }
                for message in batch {
                    state.withLock { $0.running += 1 }
                    group.addTask {
                        await self.handle(message)
                        self.state.withLock {
                            $0.running -= 1
                            $0.freed?.yield()
                        }
                    }
                }
            }
        }
    }

    // MARK: One message

    private func handle(_ message: JetStreamMessage) async {
        if let operations = plan.operations, !operations.contains(Self.operation(of: message, type: plan.type)) {
            await ack(message)  // an operation this trigger does not take
            return
        }
        let outcome = await call(message)
        if outcome.ok {
            await ack(message)
        } else if outcome.unanswered {
            // The agent did not answer (it died or is stuck): not the function's failure. The message waits an
            // ack wait, while the node replaces the agent, rather than using its deliveries up at once.
            do { try await message.nak(delay: plan.ackWait) } catch {
                logger.debug("a nak was not sent; ack_wait brings the message back", metadata: ["error": "\(error)"])
            }
        } else if message.metadata.delivered >= UInt64(plan.maxDeliver) {
            await deadLetter(message, error: outcome.text)
        } else {
            do { try await message.nak(delay: plan.retryDelay(afterDelivery: message.metadata.delivered)) } catch {
                logger.warning(
                    "a failed message could not be nak'd; it comes again after ack_wait",
                    metadata: ["error": "\(error)", "nats.stream_sequence": "\(message.metadata.streamSequence)"])
            }
        }
    }

    /// Runs the function on `message`, keeping the message in progress meanwhile (well inside `ack_wait`).
    private func call(_ message: JetStreamMessage) async -> (ok: Bool, unanswered: Bool, text: String) {
        let keepAliveEvery = max(plan.ackWait / 3, .milliseconds(250))
        return await withTaskGroup(of: Void.self, returning: (ok: Bool, unanswered: Bool, text: String).self) {
            group in
            group.addTask {
                while true {
                    do { try await Task.sleep(for: keepAliveEvery) } catch { return }
                    do { try await message.inProgress() } catch {
                        // The next one tries again; a message whose ack wait runs out comes again, maybe elsewhere.
                        self.logger.debug("a keep-alive was not sent", metadata: ["error": "\(error)"])
                    }
                }
            }
            let outcome: (ok: Bool, unanswered: Bool, text: String)
            do {
                let reply = try await workload.link.trigger(
                    subject: message.subject, payload: message.bytes,
                    context: FunctionContext(message, type: plan.type).json, timeout: Self.callTimeout)
                outcome = (reply.ok, false, reply.ok ? "" : String(decoding: reply.body, as: UTF8.self))
            } catch {
                outcome = (false, true, "the function did not answer: \(error)")
            }
            group.cancelAll()
            return outcome
        }
    }

    private func ack(_ message: JetStreamMessage) async {
        do { try await message.ackSync() } catch {
            // At least once: unconfirmed, the message may come again.
            logger.warning(
                "an ack was not confirmed; the message may be delivered again",
                metadata: ["error": "\(error)", "nats.stream_sequence": "\(message.metadata.streamSequence)"])
        }
    }

    /// Publishes a message that failed its last delivery to the dead-letter subject, then terminates it. A
    /// publish that fails leaves it nak'd: it is never lost.
    private func deadLetter(_ message: JetStreamMessage, error: String) async {
        let reason = Self.firstLine(error)
        if let subject = plan.deadLetterSubject {
            do {
                try await publishDeadLetter(
                    payload: message.bytes, headers: message.headers, sequence: message.metadata.streamSequence,
                    deliveries: message.metadata.delivered, error: reason, to: subject)
            } catch {
                logger.warning(
                    "a dead letter could not be published; the message is nak'd and comes again",
                    metadata: ["error": "\(error)", "nats.subject": "\(subject)"])
                do { try await message.nak(delay: plan.ackWait) } catch {
                    logger.debug("the nak was not sent either; ack_wait brings the message back")
                }
                return
            }
        } else {
            logger.warning(
                "a message failed its last delivery and is dropped (the trigger has no dead_letter_subject)",
                metadata: ["nats.stream_sequence": "\(message.metadata.streamSequence)", "error": "\(reason)"])
        }
        do { try await message.term(reason: reason) } catch {
            logger.warning("a dead-lettered message could not be terminated", metadata: ["error": "\(error)"])
        }
    }

    private func publishDeadLetter(
        payload: [UInt8], headers: NATSHeaders?, sequence: UInt64, deliveries: UInt64, error: String, to subject: String
    ) async throws {
        var h = NATSHeaders()
        for entry in headers ?? NATSHeaders() where !entry.name.hasPrefix("Nats-") {
            h[entry.name] = entry.value
        }
        h["Nex-Dead-Letter-Stream"] = plan.stream
        h["Nex-Dead-Letter-Sequence"] = String(sequence)
        h["Nex-Dead-Letter-Deliveries"] = String(deliveries)
        h["Nex-Dead-Letter-Error"] = error
        // One dead letter per message, whichever node sends it (a stream on the subject drops repeats).
        h["Nats-Msg-Id"] = "nex-dead-letter-\(plan.durable)-\(plan.stream)-\(sequence)"
        var options = PublishOptions()
        options.retryAttempts = 0
        do {
            _ = try await js.publish(payload, to: subject, headers: h, options: options)
        } catch let e as JetStreamError where e.code == 503 {
            // No stream keeps the subject: a plain publish is all there is.
            try await js.client.publish(payload, to: subject, headers: h)
            try await js.client.flush()
        }
    }

    /// A message given up by the server (its last delivery timed out, or its node stopped): dead-lettered
    /// from the stream. The copies share the advisories in one queue group, so one node acts on each.
    private func followGivenUpMessages(_ client: NATSClient) async throws {
        let plan = self.plan
        let sub = try await client.subscribe(
            to: ConsumerAdvisory.maxDeliveriesSubject(stream: plan.stream, consumer: plan.durable),
            queue: "nex-dead-letters-\(plan.durable)"
        ) { m in
            let advisory: ConsumerAdvisory.MaxDeliveries
            do { advisory = try JSONDecoder().decode(ConsumerAdvisory.MaxDeliveries.self, from: Data(m.bytes)) } catch {
                self.logger.debug("an advisory that is not one", metadata: ["error": "\(error)"])
                return
            }
            guard let subject = plan.deadLetterSubject else {
                self.logger.warning(
                    "the server gave a message up after its last delivery did not finish (no dead_letter_subject)",
                    metadata: ["nats.stream_sequence": "\(advisory.streamSequence)"])
                return
            }
            do {
                let stored = try await self.js.getMessage(stream: plan.stream, sequence: advisory.streamSequence)
                try await self.publishDeadLetter(
                    payload: stored.payload, headers: stored.headers, sequence: advisory.streamSequence,
                    deliveries: advisory.deliveries,
                    error: "its last delivery did not finish (the function timed out, or its node stopped)",
                    to: subject)
            } catch {
                self.logger.warning(
                    "a message the server gave up could not be dead-lettered",
                    metadata: ["error": "\(error)", "nats.stream_sequence": "\(advisory.streamSequence)"])
            }
        }
        try await client.flush()
        state.withLock { $0.advisories = sub }
    }

    // MARK: Helpers

    /// `put`, `delete` or `purge` (key-value); `put` or `delete` (object store); `put` otherwise.
    static func operation(of message: JetStreamMessage, type: String) -> String {
        switch type {
        case "kv":
            switch KeyValueEntry.Operation(headers: message.headers) {
            case .put: "put"
            case .delete: "delete"
            case .purge: "purge"
            }
        case "object_store":
            isDeletedObject(message.bytes) ? "delete" : "put"
        default: "put"
        }
    }

    /// The object's name from its metadata (nil when it is not an object's).
    static func objectName(_ meta: [UInt8]) -> String? {
        do { return try JSONDecoder().decode(ObjectInfo.self, from: Data(meta)).name } catch { return nil }
    }

    /// Whether object metadata says the object was deleted (metadata that is not an object's counts as a put).
    private static func isDeletedObject(_ meta: [UInt8]) -> Bool {
        do { return try JSONDecoder().decode(ObjectInfo.self, from: Data(meta)).deleted == true } catch {
            return false
        }
    }

    /// The first line of an error text, at most 512 characters (a header value).
    static func firstLine(_ text: String) -> String {
        String((text.split(whereSeparator: \.isNewline).first ?? "the function failed").prefix(512))
    }
}

/// What a function learns of a JetStream message, as its third argument (`ctx`): where the message came from
/// and how often it was delivered; for key-value and object-store triggers, the bucket, key or object name,
/// operation and revision.
struct FunctionContext: Encodable {
    var subject: String
    var headers: [String: String]
    var stream: String
    var sequence: UInt64
    /// 1 on the first attempt.
    var delivered: UInt64
    var pending: UInt64
    var timestamp: NATSTimestamp
    var bucket: String?
    var key: String?
    var name: String?
    var operation: String?
    var revision: UInt64?

    init(_ message: JetStreamMessage, type: String) {
        let m = message.metadata
        subject = message.subject
        var headers: [String: String] = [:]
        for entry in message.headers ?? NATSHeaders() { headers[entry.name] = entry.value }
        self.headers = headers
        stream = m.stream
        sequence = m.streamSequence
        delivered = m.delivered
        pending = m.pending
        timestamp = m.timestamp
        switch type {
        case "kv":
            // $KV.<bucket>.<key>
            let parts = message.subject.split(separator: ".", maxSplits: 2)
            bucket = parts.count > 1 ? String(parts[1]) : nil
            key = parts.count > 2 ? String(parts[2]) : nil
            operation = JetStreamTriggerRunner.operation(of: message, type: type)
            revision = m.streamSequence
        case "object_store":
            bucket = String(m.stream.dropFirst(4))  // OBJ_<bucket>
            name = JetStreamTriggerRunner.objectName(message.bytes)
            operation = JetStreamTriggerRunner.operation(of: message, type: type)
            revision = m.streamSequence
        default:
            break
        }
    }

    /// The JSON the function's `ctx` is parsed from (nil if it cannot be made: the function then gets none).
    var json: [UInt8]? {
        do { return Array(try JSONEncoder().encode(self)) } catch { return nil }
    }
}
