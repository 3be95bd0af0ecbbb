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

    /// Buffered messages are kept as the arrays the reader produced (one per socket read), so handing a
    /// read over costs one append, and the consumer moves messages out instead of copying them.
    struct Delivery {
        /// Arrays of messages in arrival order.
        var chunks = Deque<[NATSMessage]>()
        /// Messages taken out of `chunks` by ``nextMessage(timeout:)`` but not yet returned, reversed.
        var spill: [NATSMessage] = []
        var count = 0
        var bufferedBytes = 0
        var maxMessages: Int
        var maxBytes: Int
        var waiter: Waiter?
        var finished = false
        var failure: NATSError?
        var dropped = 0
        var inSlowConsumerEpisode = false
        var nextWaiterID = 0
        /// The ``nextMessage(timeout:)`` whose timer fired before it began to wait: it must not wait at all.
        var expiredWaiterID: Int?
        /// A handler (``NATSClient/subscribe(to:queue:handler:)``) consumes this subscription and has not
        /// finished: messages it took may still be in its hands.
        var handlerRunning = false

        /// Moves everything buffered into the caller's reversed `current` and `rest`.
        mutating func takeAll(current: inout [NATSMessage], rest: inout Deque<[NATSMessage]>) -> Bool {
            guard count > 0 else { return false }
            if spill.isEmpty {
                swap(&rest, &chunks)
                current = rest.popFirst() ?? []
                current.reverse()
            } else {
                swap(&current, &spill)
                swap(&rest, &chunks)
            }
            count = 0
            bufferedBytes = 0
            inSlowConsumerEpisode = false
            return true
        }

        /// Takes the oldest buffered message.
        mutating func popFirst() -> NATSMessage? {
            if spill.isEmpty, var chunk = chunks.popFirst() {
                chunk.reverse()
                spill = chunk
            }
            guard let m = spill.popLast() else { return nil }
            count -= 1
            bufferedBytes -= m.payload.readableBytes
            if count == 0 { inSlowConsumerEpisode = false }
            return m
        }
    }

    /// A consumer waiting for messages; resumed (without a value) when there is something to take.
    struct Waiter {
        var id: Int
        var continuation: CheckedContinuation<Void, any Error>
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
    public var pendingMessages: Int { delivery.withLock { $0.count } }

    /// Whether messages may still be waiting or being handled: buffered ones, or a handler that has not
    /// finished (it ends after the subscription did and every message it took was handled).
    var hasUnfinishedWork: Bool { delivery.withLock { $0.count > 0 || $0.handlerRunning } }

    func setHandlerRunning(_ running: Bool) { delivery.withLock { $0.handlerRunning = running } }

    /// Sets the buffer limits (messages and payload bytes) of this subscription.
    public func setPendingLimits(messages: Int, bytes: Int) {
        delivery.withLock {
            $0.maxMessages = messages
            $0.maxBytes = bytes
        }
    }

    /// Stops the subscription now. Messages already buffered are still delivered, then iteration ends.
    public func unsubscribe() async throws {
        client.removeSubscription(self, sendUnsubscribe: true)
    }

    /// ``unsubscribe()`` for callers that cannot wait (a `deinit`): the UNSUB is queued at once.
    package func unsubscribeNow() {
        client.removeSubscription(self, sendUnsubscribe: true)
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
        let id = nextWaiterID()
        let timer = client.eventLoop.scheduleTask(in: timeout.timeAmount) {
            self.failWaiter(
                id: id, NATSError(.timeout, "no message within \(timeout)", subject: self.subject), expiring: true)
        }
        defer { timer.cancel() }
        while true {
            enum Step {
                case message(NATSMessage)
                case end(NATSError?)
                case wait
            }
            let step = delivery.withLock { d -> Step in
                if let m = d.popFirst() { return .message(m) }
                return d.finished ? .end(d.failure) : .wait
            }
            switch step {
            case .message(let m): return m
            case .end(nil): return nil
            case .end(let e?): throw e
            case .wait: guard try await waitForMessages(id: id) else { return nil }
            }
        }
    }

    // MARK: Delivery (called by the client on its event loop)

    /// Appends a read's messages; returns the dropped count when this call started a slow-consumer episode.
    /// Messages that fit are kept (the array itself when all fit); those over the limits are dropped and counted.
    func enqueue(_ messages: [NATSMessage]) -> Int? {
        var wake: CheckedContinuation<Void, any Error>?
        let slow = delivery.withLock { d -> Int? in
            guard !d.finished else { return nil }
            var fit = 0
            var bytes = d.bufferedBytes
            let room = d.maxMessages - d.count
            while fit < messages.count, fit < room {
                let size = messages[fit].payload.readableBytes
                if bytes + size > d.maxBytes { break }
                bytes += size
                fit += 1
            }
            if fit == messages.count {
                d.chunks.append(messages)
            } else if fit > 0 {
                d.chunks.append(Array(messages[..<fit]))
            }
            d.count += fit
            d.bufferedBytes = bytes
            if d.count > 0, let w = d.waiter {
                d.waiter = nil
                wake = w.continuation
            }
            guard fit < messages.count else { return nil }
            d.dropped += messages.count - fit
            guard !d.inSlowConsumerEpisode else { return nil }
            d.inSlowConsumerEpisode = true
            return d.dropped
        }
        wake?.resume()
        return slow
    }

    /// Ends iteration after the buffered messages; with an error, iteration throws it at that point.
    func finish(_ failure: NATSError? = nil) {
        let waiter = delivery.withLock { d -> Waiter? in
            guard !d.finished else { return nil }
            d.finished = true
            d.failure = failure
            defer { d.waiter = nil }
            return d.waiter
        }
        waiter?.continuation.resume()
    }

    // MARK: Consumption

    /// Waits until messages are buffered or the subscription ended. False when the wait was cancelled.
    nonisolated(nonsending) fileprivate func waitForMessages(id: Int) async throws -> Bool {
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    enum Wait { case ready, waiting, taken, expired }
                    let wait = delivery.withLock { d -> Wait in
                        if d.count > 0 || d.finished { return .ready }
                        // Its timer fired while it looked (a zero or tiny timeout on a busy machine).
                        if d.expiredWaiterID == id { return .expired }
                        // Another consumer waits already: replacing it would leave it waiting for ever.
                        if let other = d.waiter, other.id != id { return .taken }
                        d.waiter = Waiter(id: id, continuation: c)
                        return .waiting
                    }
                    if wait == .ready {
                        c.resume()
                    } else if wait == .expired {
                        c.resume(throwing: NATSError(.timeout, "no message in time", subject: subject))
                    } else if wait == .taken {
                        c.resume(
                            throwing: NATSError(
                                .alreadyConsumed,
                                "another task is consuming this subscription: consume it from one task",
                                subject: subject))
                    } else if Task.isCancelled {
                        // Cancelled before the waiter was set: the cancellation handler found nothing to fail.
                        failWaiter(id: id, CancellationError())
                    }
                }
            } onCancel: {
                failWaiter(id: id, CancellationError())
            }
            return true
        } catch is CancellationError {
            return false
        }
    }

    /// Resumes the waiter `id`, if it is still waiting, with an error.
    /// `expiring`: its timer fired; when the waiter has not begun to wait, it is told not to.
    private func failWaiter(id: Int, _ error: any Error, expiring: Bool = false) {
        let waiter = delivery.withLock { d -> Waiter? in
            guard let w = d.waiter, w.id == id else {
                if expiring { d.expiredWaiterID = id }
                return nil
            }
            d.waiter = nil
            return w
        }
        waiter?.continuation.resume(throwing: error)
    }

    fileprivate func nextWaiterID() -> Int {
        delivery.withLock { d in
            d.nextWaiterID += 1
            return d.nextWaiterID
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }

    /// Iterates the subscription; ends when the subscription ends, throws if it ended with an error.
    /// Takes everything buffered at once, so a busy subscription costs one lock per batch, not per message.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscription: NATSSubscription
        /// The batch being consumed, reversed so `popLast` moves messages out without copying.
        var current: [NATSMessage] = []
        var rest = Deque<[NATSMessage]>()

        nonisolated(nonsending) public mutating func next() async throws -> NATSMessage? {
            while true {
                if let m = current.popLast() { return m }
                if var chunk = rest.popFirst() {
                    chunk.reverse()
                    current = chunk
                    continue
                }
                enum Step {
                    case took
                    case end(NATSError?)
                    case wait(Int)
                }
                let step = subscription.delivery.withLock { d -> Step in
                    if d.takeAll(current: &current, rest: &rest) { return .took }
                    if d.finished { return .end(d.failure) }
                    d.nextWaiterID += 1
                    return .wait(d.nextWaiterID)
                }
                switch step {
                case .took: continue
                case .end(nil): return nil
                case .end(let e?): throw e
                case .wait(let id):
                    if Task.isCancelled { return nil }
                    guard try await subscription.waitForMessages(id: id) else { return nil }
                }
            }
        }
    }
}
