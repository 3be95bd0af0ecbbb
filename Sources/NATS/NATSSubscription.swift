import DequeModule
import NIOCore
import Synchronization

/// A subscription: an `AsyncSequence` of messages, ended by unsubscribe, drain, auto-unsubscribe or close.
///
/// Messages wait in a bounded buffer; when it is full, new messages are dropped, counted in
/// ``droppedMessages`` and reported as a ``NATSEvent/slowConsumer(subject:sid:dropped:)`` event — never silently.
/// Iterate from one task at a time.
public final class NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage

    /// The subject (may hold wildcards).
    public let subject: String
    /// The queue group, if any.
    public let queue: String?
    /// The subscription id on the wire.
    public let sid: UInt64
    let client: NATSClient
    let delivery: Mutex<Delivery>

    struct Delivery {
        var buffer = Deque<NATSMessage>()
        var bufferedBytes = 0
        var maxMessages: Int
        var maxBytes: Int
        var waiter: Waiter?
        var finished = false
        var failure: NATSError?
        var dropped = 0
        var inSlowConsumerEpisode = false
        var nextWaiterID = 0
    }

    struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<NATSMessage?, any Error>
    }

    init(subject: String, queue: String?, sid: UInt64, client: NATSClient, maxMessages: Int, maxBytes: Int) {
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.client = client
        self.delivery = Mutex(Delivery(maxMessages: maxMessages, maxBytes: maxBytes))
    }

    /// Messages dropped because the buffer was full.
    public var droppedMessages: Int { delivery.withLock { $0.dropped } }

    /// Messages buffered and not yet consumed.
    public var pendingMessages: Int { delivery.withLock { $0.buffer.count } }

    /// Sets the buffer limits (messages and payload bytes) of this subscription.
    public func setPendingLimits(messages: Int, bytes: Int) {
        delivery.withLock {
            $0.maxMessages = messages
            $0.maxBytes = bytes
        }
    }

    /// Stops the subscription now. Messages already buffered are still delivered, then iteration ends.
    public func unsubscribe() async throws {
        try client.removeSubscription(self, sendUnsubscribe: true)
    }

    /// Stops the subscription automatically after `count` messages in total.
    public func unsubscribe(afterMessages count: Int) async throws {
        try client.autoUnsubscribe(self, after: count)
    }

    /// Unsubscribes, waits until every message the server sent before that has arrived, then ends iteration
    /// after the buffered messages are consumed.
    public func drain() async throws {
        try await client.drainSubscription(self)
    }

    /// The next message, waiting at most `timeout`; nil when the subscription has ended.
    nonisolated(nonsending) public func nextMessage(timeout: Duration) async throws -> NATSMessage? {
        let id = delivery.withLock { d -> Int in
            d.nextWaiterID += 1
            return d.nextWaiterID
        }
        let timer = client.eventLoopGroup.any().scheduleTask(in: .nanoseconds(timeout.nanoseconds)) {
            self.failWaiter(id: id, NATSError(.timeout, "no message within \(timeout)", subject: self.subject))
        }
        defer { timer.cancel() }
        return try await waitForMessage(id: id)
    }

    // MARK: Delivery (called by the client on its event loop)

    /// Appends messages; returns the dropped count when this call started a slow-consumer episode.
    /// Messages that fit are appended in bulk; those over the limits are dropped and counted.
    func enqueue(_ messages: [NATSMessage]) -> Int? {
        var resume: (CheckedContinuation<NATSMessage?, any Error>, NATSMessage)?
        let slow = delivery.withLock { d -> Int? in
            guard !d.finished else { return nil }
            var fit = 0
            var bytes = d.bufferedBytes
            let room = d.maxMessages - d.buffer.count
            while fit < messages.count, fit < room {
                let size = messages[fit].payload.readableBytes
                if bytes + size > d.maxBytes { break }
                bytes += size
                fit += 1
            }
            d.buffer.append(contentsOf: messages[..<fit])
            d.bufferedBytes = bytes
            if let w = d.waiter, let first = d.buffer.popFirst() {
                d.waiter = nil
                d.bufferedBytes -= first.payload.readableBytes
                resume = (w.continuation, first)
            }
            guard fit < messages.count else { return nil }
            d.dropped += messages.count - fit
            guard !d.inSlowConsumerEpisode else { return nil }
            d.inSlowConsumerEpisode = true
            return d.dropped
        }
        if let (c, m) = resume { c.resume(returning: m) }
        return slow
    }

    /// Ends iteration after the buffered messages; with an error, iteration throws it at that point.
    func finish(_ failure: NATSError? = nil) {
        let waiter = delivery.withLock { d -> Waiter? in
            guard !d.finished else { return nil }
            d.finished = true
            d.failure = failure
            defer { d.waiter = nil }
            return d.buffer.isEmpty ? d.waiter : nil
        }
        if let waiter {
            if let failure {
                waiter.continuation.resume(throwing: failure)
            } else {
                waiter.continuation.resume(returning: nil)
            }
        }
    }

    var isFinished: Bool { delivery.withLock { $0.finished } }

    // MARK: Consumption

    /// Takes every buffered message at once (one lock per batch keeps high rates cheap).
    fileprivate func takeBatch(into local: inout Deque<NATSMessage>) -> Bool {
        delivery.withLock { d in
            guard !d.buffer.isEmpty else { return false }
            swap(&local, &d.buffer)
            d.bufferedBytes = 0
            d.inSlowConsumerEpisode = false
            return true
        }
    }

    nonisolated(nonsending) fileprivate func waitForMessage(id: Int) async throws -> NATSMessage? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<NATSMessage?, any Error>) in
                enum Outcome {
                    case message(NATSMessage)
                    case end(NATSError?)
                    case wait
                }
                let outcome = delivery.withLock { d -> Outcome in
                    if let m = d.buffer.popFirst() {
                        d.bufferedBytes -= m.payload.readableBytes
                        if d.buffer.isEmpty { d.inSlowConsumerEpisode = false }
                        return .message(m)
                    }
                    if d.finished { return .end(d.failure) }
                    d.waiter = Waiter(id: id, continuation: c)
                    return .wait
                }
                switch outcome {
                case .message(let m): c.resume(returning: m)
                case .end(nil): c.resume(returning: nil)
                case .end(let e?): c.resume(throwing: e)
                case .wait: break
                }
            }
        } onCancel: {
            failWaiter(id: id, nil)
        }
    }

    /// Resumes the waiter `id` (if still waiting) with an error, or with nil for cancellation.
    private func failWaiter(id: Int, _ error: NATSError?) {
        let waiter = delivery.withLock { d -> Waiter? in
            guard let w = d.waiter, w.id == id else { return nil }
            d.waiter = nil
            return w
        }
        guard let waiter else { return }
        if let error { waiter.continuation.resume(throwing: error) } else { waiter.continuation.resume(returning: nil) }
    }

    private func nextWaiterID() -> Int {
        delivery.withLock { d in
            d.nextWaiterID += 1
            return d.nextWaiterID
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }

    /// Iterates the subscription; ends when the subscription ends, throws if it ended with an error.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: NATSSubscription
        var local = Deque<NATSMessage>()

        nonisolated(nonsending) public mutating func next() async throws -> NATSMessage? {
            if let m = local.popFirst() { return m }
            if subscription.takeBatch(into: &local) { return local.popFirst() }
            if Task.isCancelled { return nil }
            return try await subscription.waitForMessage(id: subscription.nextWaiterID())
        }
    }
}
