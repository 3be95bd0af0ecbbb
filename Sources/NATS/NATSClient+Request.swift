import NATSProtocol
public import NIOCore
import NUID

extension NATSClient {
    /// Sends a request and waits for the first reply.
    ///
    /// Throws ``NATSError/Code/noResponders`` at once when nobody is subscribed, and
    /// ``NATSError/Code/timeout`` when no reply arrives in time.
    nonisolated(nonsending) public func request(
        _ payload: some Collection<UInt8>, to subject: String, headers: NATSHeaders? = nil, timeout: Duration? = nil
    ) async throws -> NATSMessage {
        let timeout = timeout ?? configuration.requestTimeout
        let mux = try requestMux()
        let token = mux.nextToken()
        let replyTo = mux.prefix + String(token)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<NATSMessage, any Error>) in
                let arm = mux.register(token, c, subject: subject, timeout: timeout)
                // Cancelled before the token was registered: the cancellation handler found nothing to fail.
                if Task.isCancelled {
                    mux.fail(token, NATSError(.cancelled, "request cancelled", subject: subject))
                    return
                }
                let outcome: PublishOutcome
                do {
                    outcome =
                        try payload.withContiguousStorageIfAvailable {
                            try enqueuePublish(
                                UnsafeRawBufferPointer($0), to: subject, replyTo: replyTo, headers: headers,
                                direct: true)
                        }
                        ?? Array(payload).withUnsafeBytes {
                            try enqueuePublish($0, to: subject, replyTo: replyTo, headers: headers, direct: true)
                        }
                } catch {
                    mux.fail(token, error)
                    return
                }
                let flush: Bool
                switch outcome {
                case .flushOn, .waitForRoom(_?): flush = true
                default: flush = false
                }
                // One hop to the event loop both arms the timeout (when needed) and writes.
                if arm || flush {
                    eventLoop.execute {
                        if arm { mux.armTimer() }
                        if flush { self.flushOutbox() }
                    }
                }
                // A lone request already on the wire: wait for the reply on this thread for a moment rather
                // than park and be woken by the loop. Resumed here, the task goes on without suspending.
                let sent = if case .sent = outcome { true } else { false }
                if sent || mux.pollingForced, let budget = mux.pollBudget(),
                    let outcome = mux.poll(token, for: budget)
                {
                    c.resume(with: outcome)
                }
            }
        } onCancel: {
            mux.fail(token, NATSError(.cancelled, "request cancelled", subject: subject))
        }
    }

    /// Sends a request with a `ByteBuffer` payload.
    nonisolated(nonsending) public func request(
        _ payload: ByteBuffer, to subject: String, headers: NATSHeaders? = nil, timeout: Duration? = nil
    ) async throws -> NATSMessage {
        try await request(payload.readableBytesView, to: subject, headers: headers, timeout: timeout)
    }

    /// Sends a request with a UTF-8 string payload.
    nonisolated(nonsending) public func request(
        _ payload: String, to subject: String, headers: NATSHeaders? = nil, timeout: Duration? = nil
    ) async throws -> NATSMessage {
        try await request(payload.utf8, to: subject, headers: headers, timeout: timeout)
    }

    /// Sends a request and gathers replies until `maxReplies` arrived, no reply came for `stall` after the
    /// first one, or `timeout` passed. No replies at all is an empty array (or ``NATSError/Code/noResponders``).
    nonisolated(nonsending) public func requestMany(
        _ payload: some Collection<UInt8>, to subject: String, headers: NATSHeaders? = nil,
        maxReplies: Int? = nil, stall: Duration? = nil, timeout: Duration? = nil
    ) async throws -> [NATSMessage] {
        let timeout = timeout ?? configuration.requestTimeout
        let inbox = "\(configuration.inboxPrefix).\(NUID.next())"
        let sub = try makeSubscription(subject: inbox, queue: nil)
        defer { removeSubscription(sub, sendUnsubscribe: true) }
        try await publish(payload, to: subject, replyTo: inbox, headers: headers)
        let deadline = ContinuousClock.now + timeout
        var replies: [NATSMessage] = []
        while maxReplies.map({ replies.count < $0 }) ?? true {
            var wait = deadline - ContinuousClock.now
            if let stall, !replies.isEmpty { wait = min(wait, stall) }
            guard wait > .zero else { break }
            let message: NATSMessage?
            do {
                message = try await sub.nextMessage(timeout: wait)
            } catch let e as NATSError where e.code == .timeout {
                break
            }
            guard let message else { break }
            if message.status == 503 {
                if replies.isEmpty { throw NATSError(.noResponders, "no responders", subject: subject) }
                continue
            }
            replies.append(message)
        }
        return replies
    }

    /// The shared reply inbox, subscribed on first use.
    func requestMux() throws(NATSError) -> RequestMux {
        let (mux, flushOn) = try state.withLock { s throws(NATSError) -> (RequestMux, (any Channel)?) in
            if let mux = s.requestMux { return (mux, nil) }
            guard s.phase != .closed, s.phase != .idle else { throw NATSError(.connectionClosed, "not connected") }
            let mux = RequestMux(
                prefix: "\(configuration.inboxPrefix).\(NUID.next()).", eventLoop: eventLoop,
                pollLimit: configuration.replyPollLimit, pollingForced: configuration.replyPollForced)
            let sid = s.allocateSID()
            let subject = mux.prefix + "*"
            s.subscriptions[sid] = ClientState.SubscriptionEntry(subject: subject, queue: nil, target: .requestMux(mux))
            s.requestMux = mux
            guard s.isConnected else { return (mux, nil) }
            ClientOp.writeSubscribe(subject: subject, queue: nil, sid: sid, into: &s.outbox)
            return (mux, s.scheduleFlushIfNeeded())
        }
        flushOn?.eventLoop.execute { self.flushOutbox() }
        return mux
    }
}

extension NATSMessage {
    /// Replies to this message (publishes to its `replyTo`) through `client`.
    nonisolated(nonsending) public func respond(
        _ payload: some Collection<UInt8>, headers: NATSHeaders? = nil, using client: NATSClient
    ) async throws {
        guard let replyTo else { throw NATSError(.invalidSubject, "message has no reply subject", subject: subject) }
        try await client.publish(payload, to: replyTo, headers: headers)
    }

    /// Replies with a `ByteBuffer` payload.
    nonisolated(nonsending) public func respond(
        _ payload: ByteBuffer, headers: NATSHeaders? = nil, using client: NATSClient
    ) async throws {
        guard let replyTo else { throw NATSError(.invalidSubject, "message has no reply subject", subject: subject) }
        try await client.publish(payload, to: replyTo, headers: headers)
    }
}
