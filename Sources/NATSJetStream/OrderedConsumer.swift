import NATS
import NUID

/// An ordered consumer: every message of the filter, in stream order, exactly once. An ephemeral, ack-less,
/// in-memory consumer is made; when a gap shows in the consumer sequence (or the consumer is gone after a
/// server restart) it is made again from the next stream sequence.
public struct OrderedConsumer: AsyncSequence, Sendable {
    public typealias Element = Delivery

    /// A message, or the moment the consumer caught up with what was stored when it started.
    public enum Delivery: Sendable {
        case message(JetStreamMessage)
        /// Everything stored at start has been delivered (also sent at once for an empty filter).
        case caughtUp
    }

    let js: JetStreamContext
    let stream: String
    let filterSubjects: [String]
    let deliverPolicy: DeliverPolicy
    let headersOnly: Bool
    let batch: Int

    /// An ordered consumer on `stream` for `filterSubjects`.
    public init(
        js: JetStreamContext, stream: String, filterSubjects: [String], deliverPolicy: DeliverPolicy = .all,
        headersOnly: Bool = false, batch: Int = 256
    ) {
        self.js = js
        self.stream = stream
        self.filterSubjects = filterSubjects
        self.deliverPolicy = deliverPolicy
        self.headersOnly = headersOnly
        self.batch = batch
    }

    public func makeAsyncIterator() -> Iterator { Iterator(ordered: self) }

    /// Deletes the ephemeral consumer and drops its inbox when the iterator goes away (iteration may stop
    /// early, as `keys()` does once caught up); the inactivity threshold is only the fallback.
    final class Cleanup: Sendable {
        let js: JetStreamContext
        let current = Locked<(consumer: Consumer?, session: PullSession?)>((nil, nil))

        init(js: JetStreamContext) { self.js = js }

        deinit {
            let (consumer, session) = current.value
            session?.close()
            if let consumer {
                let js = self.js
                // If this fails, the server removes it after the inactivity threshold.
                Task { try? await js.deleteConsumer(stream: consumer.stream, name: consumer.name) }
            }
        }
    }

    public struct Iterator: AsyncIteratorProtocol {
        let ordered: OrderedConsumer
        var consumer: Consumer?
        var session: PullSession?
        var nextStreamSequence: UInt64 = 0
        var expectedConsumerSequence: UInt64 = 1
        var caughtUpSent = false
        /// The caught-up marker is due right after the message just returned.
        var markerDue = false
        var failures = 0

        let cleanup: Cleanup

        init(ordered: OrderedConsumer) {
            self.ordered = ordered
            self.cleanup = Cleanup(js: ordered.js)
        }

        public mutating func next() async throws -> Delivery? {
            if markerDue {
                markerDue = false
                return .caughtUp
            }
            while true {
                if Task.isCancelled { return nil }
                if consumer == nil {
                    let c = try await makeConsumer()
                    consumer = c
                    cleanup.current.set((c, nil))
                    if !caughtUpSent, c.cachedInfo.pending == 0 {
                        caughtUpSent = true
                        return .caughtUp
                    }
                }
                do {
                    if session == nil {
                        session = try await PullSession(
                            consumer: consumer!, batch: ordered.batch, expires: .seconds(30))
                        cleanup.current.set((consumer, session))
                    }
                    let m = try await session!.next()
                    failures = 0
                    guard m.metadata.consumerSequence == expectedConsumerSequence else {
                        try await reset()  // a gap: start again after the last message delivered
                        continue
                    }
                    expectedConsumerSequence += 1
                    nextStreamSequence = m.metadata.streamSequence + 1
                    if !caughtUpSent, m.metadata.pending == 0 {
                        caughtUpSent = true
                        markerDue = true
                    }
                    return .message(m)
                } catch is CancellationError {
                    session?.close()
                    return nil
                } catch {
                    failures += 1
                    if failures > 20 { throw error }
                    // Cancelled: the loop's check ends the iteration next.
                    try? await Task.sleep(for: retryBackoff(failures: failures, cap: .seconds(1)))
                    try? await reset()  // best effort: the next pass makes a new consumer
                }
            }
        }

        private mutating func reset() async throws {
            session?.close()
            session = nil
            // If this fails, the server removes it after the inactivity threshold.
            if let c = consumer { try? await ordered.js.deleteConsumer(stream: c.stream, name: c.name) }
            consumer = nil
            cleanup.current.set((nil, nil))
            expectedConsumerSequence = 1
        }

        private func makeConsumer() async throws -> Consumer {
            var config = ConsumerConfig(ackPolicy: .none)
            config.name = NUID.next()
            if ordered.filterSubjects.count == 1 {
                config.filterSubject = ordered.filterSubjects[0]
            } else {
                config.filterSubjects = ordered.filterSubjects
            }
            if nextStreamSequence > 0 {
                config.deliverPolicy = .byStartSequence
                config.startSequence = nextStreamSequence
            } else {
                config.deliverPolicy = ordered.deliverPolicy
            }
            config.headersOnly = ordered.headersOnly ? true : nil
            config.memoryStorage = true
            config.replicas = 1
            config.maxDeliver = 1
            config.inactiveThreshold = .seconds(60)
            return try await ordered.js.createConsumer(stream: ordered.stream, config: config)
        }
    }
}
