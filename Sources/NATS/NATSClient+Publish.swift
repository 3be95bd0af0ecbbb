public import NATSProtocol
public import NIOCore

extension NATSClient {
    // The entry points are inlinable so that a publish that need not wait makes no async call: an async call
    // allocates its frame from the task, which was a quarter of a publisher's CPU.

    /// Publishes `payload` to `subject`, optionally with a reply subject and headers.
    ///
    /// Returns once the message is queued for the socket (or, while reconnecting, buffered up to
    /// ``Configuration/reconnectBufferSize``). Waits only when the outbound queue is over its limit.
    @inlinable
    nonisolated(nonsending) public func publish(
        _ payload: [UInt8], to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    ) async throws {
        let mustWait = try payload.withUnsafeBytes {
            try publishWithoutWaiting($0, to: subject, replyTo: replyTo, headers: headers)
        }
        if mustWait { try await waitForRoom() }
    }

    /// Publishes a `ByteBuffer` payload.
    @inlinable
    nonisolated(nonsending) public func publish(
        _ payload: ByteBuffer, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    ) async throws {
        let mustWait = try payload.withUnsafeReadableBytes {
            try publishWithoutWaiting($0, to: subject, replyTo: replyTo, headers: headers)
        }
        if mustWait { try await waitForRoom() }
    }

    /// Publishes a string as UTF-8.
    @inlinable
    nonisolated(nonsending) public func publish(
        _ payload: String, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    ) async throws {
        var payload = payload
        let mustWait = try payload.withUTF8 {
            try publishWithoutWaiting(UnsafeRawBufferPointer($0), to: subject, replyTo: replyTo, headers: headers)
        }
        if mustWait { try await waitForRoom() }
    }

    /// Publishes any collection of bytes.
    @inlinable
    nonisolated(nonsending) public func publish(
        _ payload: some Collection<UInt8>, to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    ) async throws {
        let mustWait =
            try payload.withContiguousStorageIfAvailable {
                try publishWithoutWaiting(UnsafeRawBufferPointer($0), to: subject, replyTo: replyTo, headers: headers)
            }
            ?? Array(payload).withUnsafeBytes {
                try publishWithoutWaiting($0, to: subject, replyTo: replyTo, headers: headers)
            }
        if mustWait { try await waitForRoom() }
    }

    /// The synchronous part of a publish: queues the message and wakes the event loop if it must write;
    /// true when the caller must then wait for room (the outbound queue is over its limit).
    @usableFromInline
    func publishWithoutWaiting(
        _ payload: UnsafeRawBufferPointer, to subject: String, replyTo: String?, headers: NATSHeaders?
    ) throws(NATSError) -> Bool {
        switch try enqueuePublish(payload, to: subject, replyTo: replyTo, headers: headers) {
        case .queued, .sent:
            return false
        case .flushOn(let channel):
            channel.eventLoop.execute { self.flushOutbox() }
            return false
        case .waitForRoom(let channel):
            if let channel { channel.eventLoop.execute { self.flushOutbox() } }
            return true
        }
    }

    /// Publishes without suspending: the message is queued for the socket (or the reconnect buffer) and the
    /// event loop is woken. For code that cannot await, such as a continuation being set up; it skips the
    /// back-pressure wait of ``publish(_:to:replyTo:headers:)``, so use it for occasional messages only.
    public func enqueueAndFlush(
        _ payload: [UInt8], to subject: String, replyTo: String? = nil, headers: NATSHeaders? = nil
    )
        throws
    {
        _ = try payload.withUnsafeBytes {
            try publishWithoutWaiting($0, to: subject, replyTo: replyTo, headers: headers)
        }
    }

    enum PublishOutcome {
        /// In the outbox; the loop will write it (a flush is already scheduled).
        case queued
        /// Written to the socket by the caller (see ``ClientState/writeDirectly()``).
        case sent
        case flushOn(any Channel)
        case waitForRoom((any Channel)?)
    }

    /// Validates and appends a publish to the outbox. The synchronous core of every publish and request.
    ///
    /// With `direct` (a request, whose caller waits for the answer), a frame that finds nothing else queued is
    /// written from the caller's thread, sparing the event loop's wake-up; see ``ClientState/writeDirectly()``.
    func enqueuePublish(
        _ payload: UnsafeRawBufferPointer, to subject: String, replyTo: String?, headers: NATSHeaders?,
        direct: Bool = false
    ) throws(NATSError) -> PublishOutcome {
        guard SubjectValidation.isValidPublishSubject(subject) else {
            throw NATSError(.invalidSubject, "not a valid subject to publish to", subject: subject)
        }
        if let replyTo, !SubjectValidation.isValidPublishSubject(replyTo) {
            throw NATSError(.invalidSubject, "not a valid reply subject", subject: replyTo)
        }
        if let headers {
            do { try headers.validate() } catch { throw NATSError(.invalidHeaders, error.detail, subject: subject) }
        }
        let size = payload.count + (headers?.encodedLength ?? 0)
        let limit = configuration.maxPendingOutboundBytes
        return try state.withLock { s throws(NATSError) -> PublishOutcome in
            switch s.phase {
            case .closed, .idle:
                throw NATSError(.connectionClosed, "the connection is closed", subject: subject)
            case .connecting, .reconnecting:
                if s.outbox.readableBytes + size > configuration.reconnectBufferSize {
                    throw NATSError(
                        .reconnectBufferExceeded,
                        "more than \(configuration.reconnectBufferSize) bytes buffered while disconnected",
                        subject: subject)
                }
            case .connected, .draining:
                break
            }
            // Read in place: binding the whole `ServerInfo` would retain and release its strings per publish.
            if let maxPayload = s.info?.maxPayload {
                guard size <= maxPayload else {
                    throw NATSError(
                        .payloadTooLarge, "\(size) bytes exceed the server's max_payload of \(maxPayload)",
                        subject: subject)
                }
                if headers != nil, s.info?.supportsHeaders == false {
                    throw NATSError(.headersNotSupported, "the server does not support headers", subject: subject)
                }
            }
            let wasEmpty = s.outbox.readableBytes == 0
            ClientOp.writePublish(
                subject: subject, replyTo: replyTo, headers: headers, payload: payload, into: &s.outbox)
            s.statistics.outMessages += 1
            s.statistics.outBytes += payload.count
            if direct, wasEmpty, s.writeDirectly() { return .sent }
            let flushOn = s.scheduleFlushIfNeeded()
            if s.isConnected, s.outbox.readableBytes > limit { return .waitForRoom(flushOn) }
            if let flushOn { return .flushOn(flushOn) }
            return .queued
        }
    }

    /// Waits until the event loop has taken the outbox (backpressure for fast publishers).
    @usableFromInline
    nonisolated(nonsending) func waitForRoom() async throws {
        let limit = configuration.maxPendingOutboundBytes
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let now = state.withLock { s -> Bool in
                guard s.isConnected, s.outbox.readableBytes > limit else { return true }
                s.roomWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}
