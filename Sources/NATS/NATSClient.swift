public import Logging
public import NATSProtocol
public import NIOCore
import NIOPosix
import NUID
public import ServiceLifecycle
import Synchronization

/// A NATS client on SwiftNIO: publish, subscribe, request/reply, with reconnect, auth and TLS.
///
/// ```swift
/// let client = NATSClient(configuration: .init(servers: ["nats://127.0.0.1:4222"]))
/// try await client.connect()
/// let sub = try await client.subscribe(to: "greet.*")
/// try await client.publish("hello", to: "greet.joe")
/// for try await msg in sub { print(msg.subject, msg.string) }
/// ```
///
/// All methods are safe to call from any task. Publishing does not hop through an actor: it appends to a
/// locked buffer that the event loop writes out in batches.
public final class NATSClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: Configuration
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup
    /// The loop every connection of this client lives on (one reader, like one read loop per connection).
    let eventLoop: any EventLoop
    /// Runs tasks on ``eventLoop``: subscription handlers use it so answering needs no thread hop.
    public let taskExecutor: EventLoopTaskExecutor
    let state: Mutex<ClientState>
    let broadcaster = EventBroadcaster()
    let supervisor = Mutex<Task<Void, Never>?>(nil)
    let addresses: [ServerAddress]
    let addressError: NATSError?
    let transport: any Transport

    /// Creates a client; nothing happens on the network until ``connect()``.
    public convenience init(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "nats", factory: { _ in SwiftLogNoOpLogHandler() }),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        let transport: any Transport =
            configuration.connectedSocket.map { DescriptorTransport($0) }
            ?? TCPTransport(dialFilter: configuration.dialFilter)
        self.init(configuration: configuration, logger: logger, eventLoopGroup: eventLoopGroup, transport: transport)
    }

    init(configuration: Configuration, logger: Logger, eventLoopGroup: any EventLoopGroup, transport: any Transport) {
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
        self.eventLoop = eventLoopGroup.next()
        self.taskExecutor = EventLoopTaskExecutor(eventLoop)
        var parsed: [ServerAddress] = []
        var bad: NATSError?
        for text in configuration.servers {
            if let a = ServerAddress(parsing: text) {
                parsed.append(a)
            } else {
                bad = NATSError(.invalidURL, "not a NATS URL: \(text)")
            }
        }
        self.addresses = parsed
        self.addressError = bad
        let pool = ServerPool(parsed, policy: configuration.reconnect, randomize: configuration.randomizeServers)
        self.state = Mutex(ClientState(pool: pool, maxPingsOutstanding: configuration.maxPingsOutstanding))
    }

    /// Connection events (disconnected, reconnected, lame duck, servers changed, errors, slow consumers).
    /// Each call returns a new stream that sees events from then on.
    public var events: AsyncStream<NATSEvent> { broadcaster.stream() }

    /// True while connected to a server.
    public var isConnected: Bool { state.withLock { $0.isConnected } }

    /// The INFO of the server currently (or last) connected to.
    public var serverInfo: ServerInfo? { state.withLock { $0.info } }

    /// The server currently connected to (password redacted).
    public var connectedServer: String? { state.withLock { $0.isConnected ? $0.currentServer?.description : nil } }

    /// The servers the client knows of, configured and learned from the cluster.
    public var knownServers: [String] { state.withLock { $0.pool.servers.map(\.address.description) } }

    /// The largest payload the server accepts.
    public var maxPayload: Int { state.withLock { $0.info?.maxPayload ?? 1 << 20 } }

    // MARK: Connect and close

    /// Connects to the first reachable server of the configuration and starts supervising the connection
    /// (reconnecting when it drops) until ``close()`` or ``drain()``.
    ///
    /// To give the connection an owner, run the client as a `Service` (``run()``): it connects if needed and
    /// returns only when the client has closed.
    public func connect() async throws {
        if let addressError { throw addressError }
        guard !addresses.isEmpty else { throw NATSError(.invalidURL, "no servers configured") }
        try state.withLock { s throws(NATSError) in
            switch s.phase {
            case .idle: s.phase = .connecting
            case .closed: throw NATSError(.connectionClosed, "this client is closed; make a new one to connect again")
            default: throw NATSError(.invalidConfiguration, "connect() was already called")
            }
        }
        let attempts = configuration.retryOnFailedConnect ? Int.max : addresses.count
        switch await connectToNextServer(attempts: attempts, keepTrying: { true }) {
        case .success(let server):
            broadcaster.emit(.connected(server: server.description))
            logger.debug("connected", metadata: ["nats.server": "\(server)"])
            startSupervisor()
        case .failure(let error):
            finishClosing(NATSError(.connectionClosed, "connect failed"))
            if let e = error as? NATSError, e.code != .timeout, e.code != .noServers { throw e }
            let reason = (error as? NATSError)?.message ?? "\(error)"
            throw NATSError(.noServers, reason)
        }
    }

    /// Closes the connection: queued publishes are written first (briefly), waiters fail with
    /// ``NATSError/Code/connectionClosed``, and subscriptions end after their buffered messages.
    public func close() async {
        let (channel, outbox) = state.withLock { s -> ((any Channel)?, ByteBuffer?) in
            guard s.phase != .closed else { return (nil, nil) }
            let out = s.isConnected && s.outbox.readableBytes > 0 ? s.outbox : nil
            s.outbox.clear()
            s.phase = .closed
            return (s.channel, out)
        }
        if let channel {
            if let outbox {
                let written = channel.eventLoop.makePromise(of: Void.self)
                channel.writeAndFlush(outbox, promise: written)
                let giveUp = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
                do { try await written.futureResult.get() } catch {
                    // Those publishes are lost: the caller believed them sent.
                    logger.warning(
                        "queued publishes not written before close",
                        metadata: ["bytes": "\(outbox.readableBytes)", "error": "\(error)"])
                }
                giveUp.cancel()
            }
            try? await channel.close()  // closed already, by the peer or the give-up timer
        }
        finishClosing(NATSError(.connectionClosed, "connection closed"))
        let task = supervisor.withLock { t in
            defer { t = nil }
            return t
        }
        task?.cancel()
    }

    /// Fails everything still waiting and ends every subscription. Idempotent.
    func finishClosing(_ error: NATSError) {
        let finished = state.withLock { s in
            guard !s.finalized else { return nil as FinishedWork? }
            s.finalized = true
            s.phase = .closed
            s.channel = nil
            s.closeDirectWriter()
            let subs = s.subscriptions.values.map(\.target)
            s.subscriptions.removeAll()
            defer { s.pongWaiters.removeAll() }
            s.unsentPings = 0
            let rooms = s.roomWaiters
            s.roomWaiters.removeAll()
            let mux = s.requestMux
            s.requestMux = nil
            return FinishedWork(subs: subs, pongs: Array(s.pongWaiters), rooms: rooms, mux: mux)
        }
        guard let (subs, pongs, rooms, mux) = finished.map({ ($0.subs, $0.pongs, $0.rooms, $0.mux) }) else { return }
        for t in subs {
            if case .subscription(let sub) = t { sub.finish() }
        }
        for case .flush(_, let c) in pongs { c.resume(throwing: error) }
        for c in rooms { c.resume(throwing: error) }
        mux?.failAll(error)
        broadcaster.emit(.closed)
        broadcaster.finish()
    }

    private struct FinishedWork {
        var subs: [ClientState.Target]
        var pongs: [ClientState.PongWaiter]
        var rooms: [CheckedContinuation<Void, any Error>]
        var mux: RequestMux?
    }

    /// Connects a client, runs `body` with it, and closes it when `body` returns or throws: a connection
    /// scoped to its use.
    ///
    /// ```swift
    /// try await NATSClient.withConnection(configuration: .init(servers: ["nats://127.0.0.1:4222"])) { nc in
    ///     try await nc.publish("hello", to: "greet.joe")
    /// }
    /// ```
    nonisolated(nonsending) public static func withConnection<Result>(
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "nats", factory: { _ in SwiftLogNoOpLogHandler() }),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: nonisolated(nonsending) (NATSClient) async throws -> Result
    ) async throws -> Result {
        let client = NATSClient(configuration: configuration, logger: logger, eventLoopGroup: eventLoopGroup)
        try await client.connect()
        let result: Swift.Result<Result, any Error>
        do { result = .success(try await body(client)) } catch { result = .failure(error) }
        await client.close()
        return try result.get()
    }

    // MARK: Flush

    /// Waits until the server has processed everything sent so far (a PING/PONG round trip).
    /// While reconnecting it waits for the new connection, up to the timeout.
    nonisolated(nonsending) public func flush(timeout: Duration? = nil) async throws {
        let timeout = timeout ?? configuration.requestTimeout
        let id = state.withLock { $0.allocateWaiterID() }
        let timer = Mutex<Scheduled<Void>?>(nil)
        defer { timer.withLock { $0?.cancel() } }
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let result = state.withLock { s -> Result<(any Channel)?, NATSError> in
                guard s.phase != .closed, s.phase != .idle else {
                    return .failure(NATSError(.connectionClosed, "not connected"))
                }
                s.queuePing(.flush(id: id, c))
                return .success(s.scheduleFlushIfNeeded())
            }
            switch result {
            case .failure(let e):
                c.resume(throwing: e)
            case .success(let channel):
                timer.withLock {
                    $0 = eventLoopGroup.any().scheduleTask(in: timeout.timeAmount) {
                        self.failFlush(id: id, NATSError(.timeout, "flush timed out after \(timeout)"))
                    }
                }
                if let channel { channel.eventLoop.execute { self.flushOutbox() } }
            }
        }
    }

    /// Fails a flush that timed out. Its PONG will still arrive, so a keep-alive placeholder takes its slot.
    private func failFlush(id: Int, _ error: NATSError) {
        let c = state.withLock { s -> CheckedContinuation<Void, any Error>? in
            for i in s.pongWaiters.indices {
                if case .flush(let wid, let c) = s.pongWaiters[i], wid == id {
                    s.pongWaiters[i] = .keepAlive
                    return c
                }
            }
            return nil
        }
        c?.resume(throwing: error)
    }

    // MARK: Supervision

    /// Starts supervising the connection: a task of the client's own (so ``close()`` can cancel it), awaited
    /// by ``run()`` when the client runs as a service. It holds the client weakly; ``close()``, cancelling
    /// ``run()`` and the client's deinit cancel it.
    func startSupervisor() {
        let task = Task { [weak self] in await Self.supervise(Weak(self)) }
        supervisor.withLock { $0 = task }
    }

    /// Closes the connection of a client its user let go of without closing it.
    deinit {
        closeNow(NATSError(.connectionClosed, "the client was released without being closed"))
    }
}

extension NATSClient: Service {
    /// Connects (unless already connected), then owns the connection's supervision until the client closes,
    /// and on graceful shutdown drains it: the way to give a client's lifetime an owner, such as a
    /// `ServiceGroup`.
    ///
    /// Returns when the client has closed: after the drain, after ``close()``, or when reconnecting gives up.
    /// Cancelling the task closes the client at once.
    public func run() async throws {
        if state.withLock({ $0.phase == .idle }) { try await connect() }
        guard let supervision = supervisor.withLock({ $0 }) else { return }  // closed already
        enum Step { case closed, shutdownRequested }
        await withTaskCancellationHandler {
            await withTaskGroup(of: Step.self) { group in
                group.addTask {
                    await supervision.value
                    return .closed
                }
                group.addTask {
                    do { try await gracefulShutdown() } catch { return .closed }  // cancelled: the client closed
                    return .shutdownRequested
                }
                while let step = await group.next() {
                    switch step {
                    case .closed:
                        group.cancelAll()  // the shutdown waiter, if still waiting
                    case .shutdownRequested:
                        // In run()'s own task, so the end of the supervision (the drain closes) cannot cancel it.
                        do { try await drain() } catch {
                            logger.warning("drain on graceful shutdown ended early", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        } onCancel: {
            closeNow(NATSError(.connectionClosed, "the client's run() was cancelled"))
        }
    }

    /// Closes without writing what is queued and stops the supervision: for cancellation and deinit, which
    /// must not wait.
    func closeNow(_ error: NATSError) {
        supervisor.withLock { $0?.cancel() }
        let channel = state.withLock { s -> (any Channel)? in
            guard s.phase != .closed else { return nil }
            s.phase = .closed
            return s.channel
        }
        channel?.close(promise: nil)
        finishClosing(error)
    }
}

/// A weak reference that can cross tasks.
struct Weak<Object: AnyObject & Sendable>: Sendable {
    weak var value: Object?
    init(_ value: Object?) { self.value = value }
}

extension ClientState {
    /// Marks a flush as scheduled and returns the channel to run it on, when one is needed.
    mutating func scheduleFlushIfNeeded() -> (any Channel)? {
        guard isConnected, !flushScheduled, let channel else { return nil }
        flushScheduled = true
        return channel
    }
}
