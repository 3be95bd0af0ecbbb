import NATSProtocol
import NIOCore
import NIOPosix
import NIOSSL
import NKeys

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

extension NATSClient {
    /// Opens a connection to `server`, runs the INFO / TLS / CONNECT / PING handshake, then attaches it.
    func establish(_ server: ServerAddress) async throws {
        let eventLoop = self.eventLoop
        let infoPromise = eventLoop.makePromise(of: ServerInfo.self)
        let connectedPromise = eventLoop.makePromise(of: Void.self)
        let tls = configuration.tls
        let tlsFirst = tls?.handshakeFirst ?? false
        let sslContext = try (tls != nil || server.requiresTLS) ? (tls ?? TLS()).makeContextMapped() : nil
        let hostname = tls?.serverName ?? (server.host.isIPAddress ? nil : server.host)
        let client = self

        let initialize: @Sendable (any Channel) -> EventLoopFuture<Void> = { channel in
            channel.eventLoop.makeCompletedFuture {
                if tlsFirst, let sslContext {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                }
                try channel.pipeline.syncOperations.addHandler(
                    ConnectionHandler(client: client, infoPromise: infoPromise, connectedPromise: connectedPromise))
            }
        }
        let channel: any Channel
        var directWriter: Int32?
        do {
            let connection = try await transport.connect(
                to: server, on: eventLoop, timeout: configuration.connectTimeout, initialize: initialize)
            channel = connection.channel
            directWriter = connection.directWriter
        } catch {
            let e = NATSError(.noServers, "cannot reach \(server): \(Self.describeConnectFailure(error))")
            infoPromise.fail(e)
            connectedPromise.fail(e)
            throw e
        }
        let timeout = eventLoop.scheduleTask(in: configuration.connectTimeout.timeAmount) {
            let e = NATSError(.timeout, "handshake with \(server) timed out")
            infoPromise.fail(e)
            connectedPromise.fail(e)
            channel.close(promise: nil)
        }
        defer { timeout.cancel() }
        do {
            let info = try await infoPromise.futureResult.get()
            let needsTLS = tlsFirst || server.requiresTLS || tls != nil || (info.tlsRequired ?? false)
            // Bytes written past NIO would bypass TLS: the duplicate socket is only for plain TCP.
            if needsTLS, let fd = directWriter {
                TransportConnection.closeDirectWriter(fd)
                directWriter = nil
            }
            if needsTLS, !tlsFirst {
                let context = try sslContext ?? TLS().makeContextMapped()
                try await channel.eventLoop.submit {
                    try channel.pipeline.syncOperations.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: hostname), position: .first)
                }.get()
            }
            let connect = try makeConnectInfo(server: server, info: info)
            var hello = channel.allocator.buffer(capacity: 512)
            ClientOp.writeConnect(String(decoding: try JSONEncoder().encode(connect), as: UTF8.self), into: &hello)
            ClientOp.writePing(into: &hello)
            do {
                try await channel.writeAndFlush(hello)
            } catch {
                // The handler saw why the channel closed (TLS, -ERR); that reason beats "closed channel".
                try await connectedPromise.futureResult.get()
                throw error
            }
            try await connectedPromise.futureResult.get()
            try attach(channel: channel, directWriter: directWriter, server: server, info: info)
        } catch {
            if let fd = directWriter { TransportConnection.closeDirectWriter(fd) }
            channel.close(promise: nil)
            if let e = error as? NATSError { throw e }
            if isTLSError(error) { throw NATSError(.tlsFailure, "\(error)") }
            throw NATSError(.disconnected, "handshake with \(server) failed: \(error)")
        }
    }

    /// Makes `channel` the live connection: subscriptions are restored before anything queued is sent.
    private func attach(channel: any Channel, directWriter: Int32?, server: ServerAddress, info: ServerInfo) throws {
        let serversChanged = try state.withLock { s throws(NATSError) -> [String]? in
            guard s.phase != .closed else { throw NATSError(.connectionClosed, "closed while connecting") }
            s.channel = channel
            s.directWriter = directWriter
            s.nioWrites = directWriter == nil ? nil : PendingWrites()
            s.phase = .connected
            s.info = info
            s.currentServer = server
            s.pool.connected(server)
            s.keepAlive = KeepAliveStateMachine(maxOutstanding: configuration.maxPingsOutstanding)
            s.disconnectReason = nil
            s.prepareResubscribe()
            s.flushScheduled = true
            if let urls = info.connectURLs, s.pool.learn(connectURLs: urls, current: server) {
                return s.pool.servers.map(\.address.description)
            }
            return nil
        }
        if let serversChanged { broadcaster.emit(.serversChanged(serversChanged)) }
        channel.eventLoop.execute { self.flushOutbox() }
    }

    /// The CONNECT options for `server`, with the credentials of the configuration or the URL.
    func makeConnectInfo(server: ServerAddress, info: ServerInfo) throws -> ConnectInfo {
        var c = ConnectInfo()
        c.name = configuration.name
        c.echo = configuration.echo
        c.verbose = configuration.verbose
        c.pedantic = configuration.pedantic
        c.tlsRequired = server.requiresTLS || configuration.tls != nil
        c.headers = true
        c.noResponders = true
        switch configuration.auth {
        case .none:
            if let user = server.user {
                if let password = server.password {
                    c.user = user
                    c.pass = password
                } else {
                    c.authToken = user
                }
            }
        case .token(let token):
            c.authToken = token
        case .userPassword(let user, let password):
            c.user = user
            c.pass = password
        case .nkey(let seed):
            let kp = try keyPair(seed)
            c.nkey = kp.publicKey
            c.sig = try signNonce(info.nonce, with: kp)
        case .credentialsFile(let path):
            let creds: CredentialsFile
            do {
                creds = try CredentialsFile(parsing: String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw NATSError(.invalidCredentials, "cannot read credentials file \(path): \(error)")
            }
            c.jwt = creds.jwt
            c.sig = try signNonce(info.nonce, with: keyPair(creds.seed))
        case .jwt(let jwt, let seed):
            c.jwt = jwt
            c.sig = try signNonce(info.nonce, with: keyPair(seed))
        }
        return c
    }

    private func keyPair(_ seed: String) throws(NATSError) -> NKeyPair {
        do { return try NKeyPair(seed: seed) } catch {
            throw NATSError(.invalidCredentials, "invalid nkey seed: \(error.message)")
        }
    }

    private func signNonce(_ nonce: String?, with kp: NKeyPair) throws(NATSError) -> String? {
        guard let nonce else { return nil }
        do { return Base64URL.encode(try kp.sign(Array(nonce.utf8))) } catch {
            throw NATSError(.invalidCredentials, "cannot sign the server nonce: \(error.message)")
        }
    }

    // MARK: Supervision and reconnect

    /// Watches the connection and reconnects when it drops, until the client closes for good or the task is
    /// cancelled. While the connection is up it holds the client weakly, so a client its user lets go of is
    /// freed (and its deinit closes the connection); while it reconnects, it holds it.
    static func supervise(_ client: Weak<NATSClient>) async {
        while !Task.isCancelled {
            guard let channel = client.value?.state.withLock({ $0.channel }) else { return }
            try? await channel.closeFuture.get()  // the result says nothing: the state says why it closed
            guard let strong = client.value, await strong.recoverFromLoss(of: channel) else { return }
        }
    }

    /// Handles the loss of `channel`: reconnects when allowed; returns false when the client is done.
    private func recoverFromLoss(of channel: any Channel) async -> Bool {
        let lost = state.withLock { s -> (failed: [CheckedContinuation<Void, any Error>], reason: String)? in
            guard s.channel === channel, s.phase == .connected || s.phase == .draining else { return nil }
            let reason = s.disconnectReason?.description ?? "connection closed"
            s.channel = nil
            s.closeDirectWriter()
            s.phase = s.phase == .draining ? .closed : .reconnecting
            s.flushScheduled = false
            return (s.dropSentPings(), reason)
        }
        guard let lost else { return false }
        let error = NATSError(.disconnected, lost.reason)
        for c in lost.failed { c.resume(throwing: error) }
        broadcaster.emit(.disconnected(reason: lost.reason))
        logger.debug("disconnected", metadata: ["reason": "\(lost.reason)"])
        guard configuration.allowReconnect, state.withLock({ $0.phase == .reconnecting }) else {
            finishClosing(error)
            return false
        }
        guard await reconnect() else {
            finishClosing(NATSError(.noServers, "reconnect attempts exhausted"))
            return false
        }
        return true
    }

    private func reconnect() async -> Bool {
        let connected = await connectToNextServer(attempts: Int.max) {
            self.state.withLock { $0.phase == .reconnecting }
        }
        guard case .success(let server) = connected else { return false }
        state.withLock { $0.statistics.reconnects += 1 }
        broadcaster.emit(.reconnected(server: server.description))
        logger.debug("reconnected", metadata: ["nats.server": "\(server)"])
        return true
    }

    /// Tries servers in the pool's order, waiting as it says, until one connects, the pool gives up,
    /// `attempts` run out, `keepTrying` turns false or the task is cancelled. The one loop behind the first
    /// connect and every reconnect. An authorization failure stops it: retrying the same credentials
    /// won't help.
    func connectToNextServer(
        attempts: Int, keepTrying: () -> Bool
    ) async -> Result<ServerAddress, any Error> {
        var lastError: any Error = NATSError(.noServers, "no server left to try")
        var attemptsLeft = attempts
        while attemptsLeft > 0, !Task.isCancelled, keepTrying() {
            attemptsLeft -= 1
            let server: ServerAddress
            switch state.withLock({ $0.pool.nextAction(random: .random(in: 0..<1)) }) {
            case .giveUp:
                return .failure(lastError)
            case .connect(let a):
                server = a
            case .wait(let delay, let a):
                do { try await Task.sleep(for: delay) } catch { return .failure(error) }
                server = a
            }
            do {
                try await establish(server)
                return .success(server)
            } catch {
                lastError = error
                state.withLock { $0.pool.attemptFailed(server) }
                logger.debug("connect attempt failed", metadata: ["nats.server": "\(server)", "error": "\(error)"])
                if let e = error as? NATSError, e.code == .authorizationViolation { return .failure(e) }
            }
        }
        return .failure(lastError)
    }

    // MARK: Event-loop side

    /// Hands the outbox to the socket. Runs on the channel's event loop; waits for writability if needed.
    ///
    /// Under a sustained stream of publishes (the last write was under ``coalesceWindow`` ago) a small outbox
    /// is held back for ``coalesceDelay`` so writes carry hundreds of messages instead of a handful: each write
    /// costs a wake-up and a syscall. A lone publish or request is written at once.
    func flushOutbox() {
        // Size the next outbox like the last write: small for request/reply, large for streams.
        var fresh = ByteBufferAllocator().buffer(capacity: state.withLock { $0.nextOutboxCapacity })
        let now = NIODeadline.now()
        enum Step {
            case write(any Channel, [CheckedContinuation<Void, any Error>], counted: PendingWrites?)
            case deferred(any Channel)
            case none
        }
        let step = state.withLock { s -> Step in
            guard s.isConnected, let channel = s.channel else {
                s.flushScheduled = false
                return .none
            }
            // Not writable: stay "scheduled" so publishers don't wake us again; writability will.
            guard channel.isWritable else { return .none }
            guard s.outbox.readableBytes > 0 else {
                s.flushScheduled = false
                return .none
            }
            if !s.flushDeferred, s.outbox.readableBytes < Self.coalesceBytes, now - s.lastWrite < Self.coalesceWindow {
                s.flushDeferred = true
                return .deferred(channel)
            }
            s.flushDeferred = false
            s.flushScheduled = false
            s.lastWrite = now
            swap(&fresh, &s.outbox)
            s.nextOutboxCapacity = min(max(fresh.readableBytes * 2, 4 << 10), 1 << 20)
            s.unsentPings = 0
            // Counted while a direct writer exists: it may write only when NIO holds none of our bytes.
            let counted = s.nioWrites
            counted?.count.add(1, ordering: .relaxed)
            defer { s.roomWaiters.removeAll() }
            return .write(channel, s.roomWaiters, counted: counted)
        }
        switch step {
        case .write(let channel, let waiters, let counted):
            if let counted {
                let written = channel.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenComplete { _ in counted.count.subtract(1, ordering: .releasing) }
                channel.writeAndFlush(fresh, promise: written)
            } else {
                channel.writeAndFlush(fresh, promise: nil)
            }
            for w in waiters { w.resume() }
        case .deferred(let channel):
            channel.eventLoop.scheduleTask(in: Self.coalesceDelay) { self.flushOutbox() }
        case .none:
            break
        }
    }

    static let coalesceBytes = 32 << 10
    static let coalesceWindow = TimeAmount.microseconds(50)
    static let coalesceDelay = TimeAmount.microseconds(20)

    /// Routes a batch of messages to their subscriptions, counting toward auto-unsubscribe limits.
    /// The common case — every message for one subscription without a limit — hands the batch over whole.
    func deliver(_ frames: [NATSMessage]) {
        var batches: [(ClientState.Target, [NATSMessage])] = []
        var ended: [NATSSubscription] = []
        let whole = state.withLock { s -> ClientState.Target? in
            s.statistics.inMessages += frames.count
            for f in frames { s.statistics.inBytes += f.payload.readableBytes }
            let sid = frames[0].sid
            if let i = s.subscriptions.index(forKey: sid), s.subscriptions.values[i].max == nil,
                frames.allSatisfy({ $0.sid == sid })
            {
                s.subscriptions.values[i].received += frames.count
                return s.subscriptions.values[i].target
            }
            var lastSID: UInt64 = 0
            for f in frames {
                guard let i = s.subscriptions.index(forKey: f.sid) else { continue }
                s.subscriptions.values[i].received += 1
                let entry = s.subscriptions.values[i]
                if f.sid == lastSID, !batches.isEmpty {
                    batches[batches.count - 1].1.append(f)
                } else {
                    batches.append((entry.target, [f]))
                    lastSID = f.sid
                }
                if let max = entry.max, entry.received >= max {
                    s.subscriptions.remove(at: i)
                    lastSID = 0
                    if case .subscription(let sub) = entry.target { ended.append(sub) }
                }
            }
            return nil
        }
        if let whole { batches = [(whole, frames)] }
        for (target, messages) in batches {
            switch target {
            case .subscription(let sub):
                if let dropped = sub.enqueue(messages) {
                    broadcaster.emit(.slowConsumer(subject: sub.subject, sid: sub.sid, dropped: dropped))
                    logger.warning(
                        "slow consumer", metadata: ["nats.subject": "\(sub.subject)", "dropped": "\(dropped)"])
                }
            case .requestMux(let mux):
                for m in messages { mux.resolve(m) }
            }
        }
        for sub in ended { sub.finish() }
    }

    /// Answers the server's PING. Runs on the event loop.
    func queuePong() {
        let flush = state.withLock { s -> Bool in
            ClientOp.writePong(into: &s.outbox)
            return s.scheduleFlushIfNeeded() != nil
        }
        if flush { flushOutbox() }
    }

    func pongReceived() {
        let waiter = state.withLock { s -> ClientState.PongWaiter? in
            s.keepAlive.pongReceived()
            guard s.pongWaiters.count > s.unsentPings else { return nil }
            return s.pongWaiters.removeFirst()
        }
        if case .flush(_, let c) = waiter { c.resume() }
    }

    func serverInfoUpdated(_ info: ServerInfo) {
        let (changed, lameDuck) = state.withLock { s -> ([String]?, String?) in
            s.info = info
            var changed: [String]?
            if let urls = info.connectURLs, s.pool.learn(connectURLs: urls, current: s.currentServer) {
                changed = s.pool.servers.map(\.address.description)
            }
            return (changed, info.lameDuckMode == true ? s.currentServer?.description ?? info.serverID : nil)
        }
        if let changed { broadcaster.emit(.serversChanged(changed)) }
        if let lameDuck {
            broadcaster.emit(.lameDuckMode(server: lameDuck))
            logger.info("server entered lame duck mode", metadata: ["nats.server": "\(lameDuck)"])
        }
    }

    func serverError(_ text: String) {
        let error = NATSError.fromServer(text)
        var ended: [NATSSubscription] = []
        if error.code == .permissionViolation, text.lowercased().contains("subscription"), let subject = error.subject {
            ended = state.withLock { s in
                let sids = s.subscriptions.filter { $0.value.subject == subject }.map(\.key)
                return sids.compactMap { sid -> NATSSubscription? in
                    guard case .subscription(let sub) = s.subscriptions.removeValue(forKey: sid)?.target else {
                        return nil
                    }
                    return sub
                }
            }
        } else if error.code != .permissionViolation {
            noteDisconnect(reason: error)
        }
        for sub in ended { sub.finish(error) }
        broadcaster.emit(.error(error))
        logger.debug("server error", metadata: ["error": "\(text)"])
    }

    func noteDisconnect(reason: NATSError) {
        state.withLock { s in
            if s.disconnectReason == nil { s.disconnectReason = reason }
        }
    }

    func keepAliveTick(_ channel: any Channel) {
        let action = state.withLock { s -> (KeepAliveStateMachine.Action, (any Channel)?)? in
            guard s.channel === channel, s.isConnected else { return nil }
            let action = s.keepAlive.timerFired()
            guard action == .sendPing else { return (action, nil) }
            s.queuePing(.keepAlive)
            return (action, s.scheduleFlushIfNeeded())
        }
        switch action {
        case (.sendPing, let flushOn)?:
            if flushOn != nil { flushOutbox() }
        case (.closeStale, _)?:
            let error = NATSError(.staleConnection, "no PONG for \(configuration.maxPingsOutstanding) PINGs")
            noteDisconnect(reason: error)
            broadcaster.emit(.error(error))
            channel.close(promise: nil)
        case nil:
            break
        }
    }
}

extension NATSClient {
    /// A short reason for a failed TCP connect ("Connection refused"), not NIO's nested description.
    static func describeConnectFailure(_ error: any Error) -> String {
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
            return describeConnectFailure(first.error)
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if error is ChannelError { return "\(error)" }
        return "\(error)"
    }
}

/// Whether `error` came from TLS (handshake, certificate or hostname verification).
func isTLSError(_ error: any Error) -> Bool {
    error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError
}

extension NATSClient.TLS {
    func makeContextMapped() throws(NATSError) -> NIOSSLContext {
        do { return try makeContext() } catch { throw NATSError(.tlsFailure, "invalid TLS configuration: \(error)") }
    }
}

extension String {
    var isIPAddress: Bool {
        contains(":") || (!isEmpty && allSatisfy { $0.isNumber || $0 == "." })
    }
}
