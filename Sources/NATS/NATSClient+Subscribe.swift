import NATSProtocol
import NIOCore

extension NATSClient {
    /// Subscribes to `subject` (wildcards `*` and `>` allowed), optionally in a queue group.
    /// Iterate the returned subscription to receive messages.
    public func subscribe(to subject: String, queue: String? = nil) async throws -> NATSSubscription {
        try makeSubscription(subject: subject, queue: queue)
    }

    /// Subscribes to `subject` for as long as `body` runs: the subscription ends when `body` returns or
    /// throws, so it cannot outlive its use.
    ///
    /// ```swift
    /// let first = try await client.withSubscription(to: "greet.*") { sub in
    ///     try await client.publish("hi", to: "greet.joe")
    ///     return try await sub.nextMessage(timeout: .seconds(1))
    /// }
    /// ```
    nonisolated(nonsending) public func withSubscription<Result>(
        to subject: String, queue: String? = nil,
        _ body: nonisolated(nonsending) (NATSSubscription) async throws -> Result
    ) async throws -> Result {
        let sub = try makeSubscription(subject: subject, queue: queue)
        defer { removeSubscription(sub, sendUnsubscribe: true) }
        return try await body(sub)
    }

    /// Subscribes and runs `handler` for each message, one at a time, on a task of its own.
    /// The handler's errors are reported as ``NATSEvent/error(_:)`` events and do not stop the subscription.
    ///
    /// The task prefers the client's event loop (``taskExecutor``): a handler that answers a request does so
    /// without a thread hop. Like any code in Swift Concurrency it must not block; move CPU-heavy work to a
    /// task of its own.
    @discardableResult
    public func subscribe(
        to subject: String, queue: String? = nil, handler: @escaping @Sendable (NATSMessage) async throws -> Void
    ) async throws -> NATSSubscription {
        let sub = try makeSubscription(subject: subject, queue: queue)
        sub.setHandlerRunning(true)
        Task(executorPreference: taskExecutor) {
            // Drain waits for this: the last messages taken are handled before the connection closes.
            defer { sub.setHandlerRunning(false) }
            do {
                for try await message in sub {
                    do { try await handler(message) } catch {
                        self.broadcaster.emit(
                            .error(NATSError(.handlerFailed, "\(error)", subject: subject)))
                    }
                }
            } catch let error as NATSError {
                self.broadcaster.emit(.error(error))
            }
        }
        return sub
    }

    func makeSubscription(subject: String, queue: String?) throws(NATSError) -> NATSSubscription {
        guard SubjectValidation.isValidSubscribeSubject(subject) else {
            throw NATSError(.invalidSubject, "not a valid subject to subscribe to", subject: subject)
        }
        if let queue, !SubjectValidation.isValidQueueName(queue) {
            throw NATSError(.invalidQueue, "not a valid queue group name \"\(queue)\"", subject: subject)
        }
        let (sub, flushOn) = try state.withLock { s throws(NATSError) -> (NATSSubscription, (any Channel)?) in
            guard s.phase != .closed, s.phase != .draining else {
                throw NATSError(
                    s.phase == .closed ? .connectionClosed : .draining, "cannot subscribe", subject: subject)
            }
            let sid = s.allocateSID()
            let sub = NATSSubscription(
                subject: subject, queue: queue, sid: sid, client: self,
                maxMessages: configuration.subscriptionPendingMessages, maxBytes: configuration.subscriptionPendingBytes
            )
            s.subscriptions[sid] = ClientState.SubscriptionEntry(
                subject: subject, queue: queue, target: .subscription(sub))
            // While disconnected the SUB is sent by the resubscribe that follows the reconnect.
            guard s.isConnected else { return (sub, nil) }
            ClientOp.writeSubscribe(subject: subject, queue: queue, sid: sid, into: &s.outbox)
            return (sub, s.scheduleFlushIfNeeded())
        }
        flushOn?.eventLoop.execute { self.flushOutbox() }
        return sub
    }

    func removeSubscription(_ sub: NATSSubscription, sendUnsubscribe: Bool) {
        let flushOn = state.withLock { s -> (any Channel)? in
            guard s.subscriptions.removeValue(forKey: sub.sid) != nil else { return nil }
            guard sendUnsubscribe, s.isConnected else { return nil }
            ClientOp.writeUnsubscribe(sid: sub.sid, max: nil, into: &s.outbox)
            return s.scheduleFlushIfNeeded()
        }
        flushOn?.eventLoop.execute { self.flushOutbox() }
        sub.finish()
    }

    func autoUnsubscribe(_ sub: NATSSubscription, after count: Int) throws(NATSError) {
        guard count > 0 else { throw NATSError(.invalidConfiguration, "auto-unsubscribe count must be positive") }
        let (flushOn, endNow) = state.withLock { s -> ((any Channel)?, Bool) in
            guard let i = s.subscriptions.index(forKey: sub.sid) else { return (nil, false) }
            if s.subscriptions.values[i].received >= count {
                s.subscriptions.remove(at: i)
                return (nil, true)
            }
            s.subscriptions.values[i].max = count
            guard s.isConnected else { return (nil, false) }
            ClientOp.writeUnsubscribe(sid: sub.sid, max: count, into: &s.outbox)
            return (s.scheduleFlushIfNeeded(), false)
        }
        flushOn?.eventLoop.execute { self.flushOutbox() }
        if endNow { sub.finish() }
    }

    func drainSubscription(_ sub: NATSSubscription) async throws {
        let flushOn = state.withLock { s -> (any Channel)? in
            guard s.subscriptions[sub.sid] != nil, s.isConnected else { return nil }
            ClientOp.writeUnsubscribe(sid: sub.sid, max: nil, into: &s.outbox)
            return s.scheduleFlushIfNeeded()
        }
        flushOn?.eventLoop.execute { self.flushOutbox() }
        // Everything the server sent before our UNSUB arrives before the PONG of this flush.
        defer { removeSubscription(sub, sendUnsubscribe: false) }
        try await flush(timeout: configuration.drainTimeout)
    }

    /// Drains the connection: unsubscribes everything, lets in-flight messages arrive and buffered ones be
    /// consumed (up to ``Configuration/drainTimeout``), flushes publishes, then closes.
    public func drain() async throws {
        let subs = try state.withLock { s throws(NATSError) -> [NATSSubscription] in
            switch s.phase {
            case .closed, .idle: throw NATSError(.connectionClosed, "not connected")
            case .draining: throw NATSError(.draining, "already draining")
            default: break
            }
            s.phase = s.phase == .connected ? .draining : s.phase
            var subs: [NATSSubscription] = []
            for (sid, entry) in s.subscriptions {
                guard case .subscription(let sub) = entry.target else { continue }
                subs.append(sub)
                if s.isConnected { ClientOp.writeUnsubscribe(sid: sid, max: nil, into: &s.outbox) }
            }
            return subs
        }
        let deadline = ContinuousClock.now + configuration.drainTimeout
        var result: (any Error)?
        do {
            try await flush(timeout: configuration.drainTimeout)
        } catch {
            result = error
        }
        for sub in subs { removeSubscription(sub, sendUnsubscribe: false) }
        // Buffered messages consumed, and handlers done with the ones they took (a handler takes a whole batch
        // at once, so the buffer alone empties long before it is done).
        while ContinuousClock.now < deadline, subs.contains(where: { $0.hasUnfinishedWork }) {
            do { try await Task.sleep(for: .milliseconds(5)) } catch { break }  // cancelled: close now
        }
        await close()
        if let result { throw result }
    }
}
