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
    let js: JetStreamContext
    private let consumer: Consumer
    let workload: FunctionTarget
    let logger: Logger
    private let nodeMetrics: NodeMetrics
    private let metricsKey: TriggerMetrics.Key
    /// The trigger's series, looked up on each use: a scrape drops the series of workloads it did not see,
    /// and one that raced a deploy is made again.
    var metrics: TriggerMetrics.Series { nodeMetrics.triggers.series(for: metricsKey) }
    let state = Mutex(State())

    struct State {
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
        logger: Logger, metrics: NodeMetrics
    ) {
        self.plan = plan
        self.js = js
        self.consumer = consumer
        self.workload = workload
        self.logger = logger
        self.nodeMetrics = metrics
        self.metricsKey = TriggerMetrics.Key(
            workload: WorkloadName(namespace: workload.namespace, workload: workload.name), consumer: plan.durable,
            type: plan.type)
    }

    /// Creates (or joins) the trigger's consumer and starts pulling. The refusal says what to fix: a stream
    /// that does not exist, a work-queue stream another consumer already reads, a consumer of that name made
    /// with other settings.
    static func start(
        _ plan: JetStreamTriggerPlan, workload: FunctionTarget, client: NATSClient, policy: SubjectPolicy,
        metrics: NodeMetrics, logger: Logger
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
        let runner = JetStreamTriggerRunner(
            plan: plan, js: js, consumer: consumer, workload: workload, logger: logger, metrics: metrics)
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
                    // As the server counted at the last delivery; a pull that waited in vain found none.
                    metrics.pending.record(batch.last?.metadata.pending ?? 0)
                    metrics.delivered.increment(by: batch.count)
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

    /// How one call of the function for a message ended.
    enum CallOutcome {
        case succeeded
        /// The function failed; `permanent` when it said retrying cannot help.
        case failed(String, permanent: Bool)
        /// The agent did not answer (it died or is stuck): not the function's failure.
        case unanswered(String)
    }

    private func handle(_ message: JetStreamMessage) async {
        if let operations = plan.operations, !operations.contains(TriggerEvent.operation(of: message, type: plan.type))
        {
            await ack(message, counted: false)  // an operation this trigger does not take
            return
        }
        switch await call(message) {
        case .succeeded:
            await ack(message)
        case .unanswered(let text) where message.metadata.delivered >= UInt64(plan.maxDeliver):
            await deadLetter(message, error: text)
        case .unanswered:
            // The message waits an ack wait, while the node replaces the agent, rather than using its
            // deliveries up at once.
            metrics.retried.increment()
            do { try await message.nak(delay: plan.ackWait) } catch {
                logger.debug("a nak was not sent; ack_wait brings the message back", metadata: ["error": "\(error)"])
            }
        case .failed(let text, let permanent) where permanent || message.metadata.delivered >= UInt64(plan.maxDeliver):
            await deadLetter(message, error: text)
        case .failed:
            metrics.retried.increment()
            do { try await message.nak(delay: plan.retryDelay(afterDelivery: message.metadata.delivered)) } catch {
                logger.warning(
                    "a failed message could not be nak'd; it comes again after ack_wait",
                    metadata: ["error": "\(error)", "nats.stream_sequence": "\(message.metadata.streamSequence)"])
            }
        }
    }

    /// Runs the function on `message`, keeping the message in progress meanwhile (well inside `ack_wait`).
    private func call(_ message: JetStreamMessage) async -> CallOutcome {
        let keepAliveEvery = max(plan.ackWait / 3, .milliseconds(250))
        return await withTaskGroup(of: Void.self, returning: CallOutcome.self) { group in
            group.addTask {
                while true {
                    do { try await Task.sleep(for: keepAliveEvery) } catch { return }
                    do { try await message.inProgress() } catch {
                        // The next one tries again; a message whose ack wait runs out comes again, maybe elsewhere.
                        self.logger.debug("a keep-alive was not sent", metadata: ["error": "\(error)"])
                    }
                }
            }
            defer { group.cancelAll() }
            let reply: AgentLinkClient.Reply
            do {
                reply = try await workload.link.trigger(
                    subject: message.subject, payload: message.bytes,
                    context: FunctionContext(message, type: plan.type).json, timeout: Self.callTimeout)
            } catch {
                nodeMetrics.functionTriggered(
                    namespace: workload.namespace, workload: workload.name, succeeded: false, elapsedNanos: nil)
                return .unanswered("the function did not answer: \(error)")
            }
            metrics.duration.recordNanoseconds(reply.elapsedNanos)
            nodeMetrics.functionTriggered(
                namespace: workload.namespace, workload: workload.name, succeeded: reply.ok,
                elapsedNanos: reply.elapsedNanos)
            return reply.ok
                ? .succeeded : .failed(String(decoding: reply.body, as: UTF8.self), permanent: reply.permanent)
        }
    }

    private func ack(_ message: JetStreamMessage, counted: Bool = true) async {
        do {
            try await message.ackSync()
            if counted { metrics.acked.increment() }
        } catch {
            // At least once: unconfirmed, the message may come again.
            logger.warning(
                "an ack was not confirmed; the message may be delivered again",
                metadata: ["error": "\(error)", "nats.stream_sequence": "\(message.metadata.streamSequence)"])
        }
    }
}
