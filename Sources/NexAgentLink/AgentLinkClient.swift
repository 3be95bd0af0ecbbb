public import NIOCore
import NIOPosix
public import NexModels
import Synchronization

/// The node's side of an agent link: the node's only road to that agent.
///
/// It sends the agent its workload (deploy, stop, heartbeat) and a function's triggers, matches the answers
/// to their callers, and hands on what the agent says by itself: its hello, the workload's log lines and
/// exit, and the function's host calls.
///
/// The socket lives on a NIO event loop, the one the node's NATS connection uses: a trigger taken from NATS is
/// written, and its result read, resumed and answered, on that one thread. (A reader thread of its own cost a
/// thread wake-up per trigger, in the middle of every function's latency.)
public final class AgentLinkClient: Sendable {
    /// What the function answered.
    public struct Reply: Sendable {
        /// False when the function failed; `body` is then the error text.
        public var ok: Bool
        /// Time the function ran.
        public var elapsedNanos: Int64
        /// The reply, or the error text.
        public var body: [UInt8]
        /// A failure the function marked as one that retrying cannot help (a JavaScript error with
        /// `permanent: true`, a WebAssembly exit with code 65).
        public var permanent = false
    }

    /// Answers one host call: the result as JSON (`ok`), or the error text.
    public typealias HostCallAnswer = @Sendable (_ ok: Bool, _ body: [UInt8]) -> Void

    /// What the agent says by itself. Each is called on the link's event loop, in the order the agent sent.
    public struct Handlers: Sendable {
        /// A line the workload logged (level, text).
        public var log: @Sendable (_ level: Int, _ text: [UInt8]) -> Void
        /// The workload's process ended by itself (after its last log lines).
        public var exited: @Sendable (_ code: Int, _ message: String) -> Void
        /// A host-service call of the function, and how to answer it (once): the result as JSON (`ok`), or the
        /// error text. The answer may come from any task or thread.
        public var hostCall: @Sendable (_ call: LinkFrame.HostCall, _ answer: @escaping HostCallAnswer) -> Void

        public init(
            log: @escaping @Sendable (Int, [UInt8]) -> Void = { _, _ in },
            exited: @escaping @Sendable (Int, String) -> Void = { _, _ in },
            hostCall: @escaping @Sendable (LinkFrame.HostCall, @escaping HostCallAnswer) -> Void = { _, answer in
                answer(false, Array("no host services here".utf8))
            }
        ) {
            self.log = log
            self.exited = exited
            self.hostCall = hostCall
        }
    }

    private let triggers: PendingCalls<Reply>
    private let requests: PendingCalls<AgentResponse>
    private let hello: HelloWait
    private let channel: any Channel
    private let ticker: RepeatedTask

    private init(
        triggers: PendingCalls<Reply>, requests: PendingCalls<AgentResponse>, hello: HelloWait, channel: any Channel,
        ticker: RepeatedTask
    ) {
        self.triggers = triggers
        self.requests = requests
        self.hello = hello
        self.channel = channel
        self.ticker = ticker
    }

    /// Takes ownership of `descriptor` (the node's end of a connected stream socket pair, or of a relay into a
    /// VM) and reads the agent's frames from it on `eventLoop`. The socket becomes a NIO socket channel as it
    /// is (no duplicate descriptor that a child process could inherit).
    /// `writeLimit`: the bytes of frames that may wait for an agent that does not read its link before more
    /// triggers are refused.
    public static func start(
        descriptor: Int32, on eventLoop: any EventLoop, writeLimit: Int = AgentLinkClient.defaultWriteLimit,
        handlers: Handlers = Handlers()
    ) async throws -> AgentLinkClient {
        let triggers = PendingCalls<Reply>()
        let requests = PendingCalls<AgentResponse>()
        let hello = HelloWait()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .channelOption(.writeBufferWaterMark, value: .init(low: writeLimit / 2, high: writeLimit))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LinkFrameDecoder(maxLength: maxAgentFrame)),
                            AgentFrameHandler(triggers: triggers, requests: requests, hello: hello, handlers: handlers))
                    }
                }
                .withConnectedSocket(descriptor)
                .get()
        } catch {
            // Not closed here: past the channel's creation NIO has closed it already, and creation fails only
            // if a fresh socket cannot be made non-blocking. A leak beats closing a number reused since.
            throw LinkError("the agent link could not be opened: \(error)")
        }
        // Deadlines are checked about once a second: a function's timeout is far longer than that.
        let ticker = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            triggers.expire()
            requests.expire()
            hello.expire()
        }
        channel.closeFuture.whenComplete { _ in
            ticker.cancel()
            let reason = "the agent link closed: the other end closed the link"
            triggers.end(reason)
            requests.end(reason)
            hello.end(reason)
        }
        return AgentLinkClient(triggers: triggers, requests: requests, hello: hello, channel: channel, ticker: ticker)
    }

    /// The default of the bytes of frames that may wait for an agent (many times the largest NATS payload).
    public static let defaultWriteLimit = 64 << 20
    /// The largest frame taken from an agent: above NATS's largest default payload, far below what the node's
    /// event loop should copy for one hostile agent.
    public static let maxAgentFrame = 16 << 20
    /// Host calls of one agent the node works on at once (a function makes one per running trigger).
    public static let maxHostCallsInFlight = 256
    /// The largest arguments of one host call.
    public static let maxHostCallArguments = 8 << 20
    /// The longest exit message kept.
    public static let maxExitMessage = 4 << 10

    // MARK: Start

    /// The agent's hello, waiting for it up to `timeout`. The caller answers it with ``welcome(_:)``.
    public func awaitHello(timeout: Duration) async throws -> AgentHandshake {
        try await hello.wait(deadline: .now + timeout)
    }

    /// Answers the agent's hello: welcome, or a refusal (the caller then closes the link).
    public func welcome(_ answer: AgentResponse) {
        write(.welcome(answer))
    }

    // MARK: Workload

    /// Hands the workload to the agent; its answer, or a throw when none came within `timeout`.
    public func deploy(_ request: AgentDeployRequest, timeout: Duration) async throws -> AgentResponse {
        try await ask(timeout: timeout) { .deploy(id: $0, request) }
    }

    /// Asks the agent to stop its workload; its answer once the workload ended.
    public func stop(timeout: Duration) async throws -> AgentResponse {
        try await ask(timeout: timeout) { .stop(id: $0) }
    }

    /// Whether the agent answers; its answer names the workload it runs.
    public func heartbeat(timeout: Duration) async throws -> AgentResponse {
        try await ask(timeout: timeout) { .heartbeat(id: $0) }
    }

    private func ask(timeout: Duration, _ frame: @escaping @Sendable (UInt64) -> LinkFrame) async throws
        -> AgentResponse
    {
        try await withCheckedThrowingContinuation { continuation in
            guard let id = requests.register(continuation, deadline: .now + timeout) else { return }
            write(frame(id)) { self.requests.fail(id, $0) }
        }
    }

    // MARK: Triggers

    /// Runs the function for a message on `subject`; throws when the link is gone, when more than the link's
    /// write limit already waits for the agent to read it (it is stuck or far behind: the node's memory is not
    /// the place to queue for it), or when no result came within `timeout` (checked about once a second).
    public func trigger(
        subject: String, payload: [UInt8], traceParent: String? = nil, context: [UInt8]? = nil, timeout: Duration
    ) async throws -> Reply {
        try await withCheckedThrowingContinuation { continuation in
            guard let id = triggers.register(continuation, deadline: .now + timeout) else { return }
            let frame = LinkFrame.trigger(
                id: id, subject: subject, payload: payload, traceParent: traceParent, context: context)
            // Checked on the loop, in order with the writes before it (a trigger already runs there).
            if channel.eventLoop.inEventLoop {
                send(frame, id: id)
            } else {
                channel.eventLoop.execute { self.send(frame, id: id) }
            }
        }
    }

    /// Writes a trigger, or fails it when the agent has stopped reading. Runs on the channel's loop.
    private func send(_ frame: LinkFrame, id: UInt64) {
        guard channel.isWritable || !channel.isActive else {
            triggers.fail(id, LinkError("the agent is not reading its link (its write limit waits for it)"))
            return
        }
        channel.writeAndFlush(ByteBuffer(bytes: frame.encoded())).whenFailure { error in
            self.triggers.fail(id, LinkError("the agent link is closed: \(error)"))
        }
    }

    /// Writes a frame that is not a trigger (they are few and small: never refused for the write limit).
    private func write(_ frame: LinkFrame, failed: (@Sendable (LinkError) -> Void)? = nil) {
        channel.writeAndFlush(ByteBuffer(bytes: frame.encoded())).whenFailure { error in
            failed?(LinkError("the agent link is closed: \(error)"))
        }
    }

    /// Closes the link; calls still waiting fail.
    public func close() {
        ticker.cancel()
        channel.close(promise: nil)
        let reason = "the agent link was closed"
        triggers.end(reason)
        requests.end(reason)
        hello.end(reason)
    }
}

/// The calls waiting for their answers, by id; the one owner of that table.
final class PendingCalls<Answer: Sendable>: Sendable {
    private struct Pending {
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Answer, any Error>
    }

    private struct State {
        var nextID: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        var ended: String?
    }

    private let state = Mutex(State())

    /// A new call's id; nil (and the continuation failed) when the link has ended.
    func register(_ continuation: CheckedContinuation<Answer, any Error>, deadline: ContinuousClock.Instant) -> UInt64?
    {
        let outcome = state.withLock { s -> Result<UInt64, LinkError> in
            if let ended = s.ended { return .failure(LinkError(ended)) }
            let id = s.nextID
            s.nextID += 1
            s.pending[id] = Pending(deadline: deadline, continuation: continuation)
            return .success(id)
        }
        switch outcome {
        case .success(let id): return id
        case .failure(let error):
            continuation.resume(throwing: error)
            return nil
        }
    }

    /// Resumes call `id`; false when no call waits for it (it timed out, or the id is made up).
    @discardableResult
    func resolve(_ id: UInt64, _ answer: Answer) -> Bool {
        guard let waiter = state.withLock({ $0.pending.removeValue(forKey: id) }) else { return false }
        waiter.continuation.resume(returning: answer)
        return true
    }

    func fail(_ id: UInt64, _ error: LinkError) {
        state.withLock { $0.pending.removeValue(forKey: id) }?.continuation.resume(throwing: error)
    }

    func expire() {
        let now = ContinuousClock.now
        let expired = state.withLock { s in
            let ids = s.pending.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.pending.removeValue(forKey: $0) }
        }
        for waiter in expired { waiter.continuation.resume(throwing: LinkError("the agent did not answer in time")) }
    }

    /// Fails every waiting call and every later one with `reason` (the first reason given stays).
    func end(_ reason: String) {
        let (waiters, final) = state.withLock { s in
            if s.ended == nil { s.ended = reason }
            defer { s.pending.removeAll() }
            return (Array(s.pending.values), s.ended ?? reason)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: LinkError(final)) }
    }
}

/// The agent's hello: kept when it comes before anyone waits, handed over when someone does.
final class HelloWait: Sendable {
    private enum State {
        case waiting(CheckedContinuation<AgentHandshake, any Error>?, deadline: ContinuousClock.Instant?)
        case arrived(AgentHandshake)
        case taken
        case ended(String)
    }

    private let state = Mutex(State.waiting(nil, deadline: nil))

    func wait(deadline: ContinuousClock.Instant) async throws -> AgentHandshake {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { s -> Result<AgentHandshake, LinkError>? in
                switch s {
                case .arrived(let hello):
                    s = .taken
                    return .success(hello)
                case .ended(let reason): return .failure(LinkError(reason))
                case .taken: return .failure(LinkError("the agent's hello was taken already"))
                case .waiting(let earlier, _):
                    guard earlier == nil else { return .failure(LinkError("someone waits for the hello already")) }
                    s = .waiting(continuation, deadline: deadline)
                    return nil
                }
            }
            if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
        }
    }

    /// The hello came; false when it is not the agent's first (the link is then broken).
    func arrived(_ hello: AgentHandshake) -> Bool {
        let (accepted, waiter) = state.withLock { s -> (Bool, CheckedContinuation<AgentHandshake, any Error>?) in
            guard case .waiting(let continuation, _) = s else { return (false, nil) }
            s = continuation == nil ? .arrived(hello) : .taken
            return (true, continuation)
        }
        waiter?.resume(returning: hello)
        return accepted
    }

    func expire() {
        let now = ContinuousClock.now
        let waiter = state.withLock { s -> CheckedContinuation<AgentHandshake, any Error>? in
            guard case .waiting(let continuation?, let deadline?) = s, deadline <= now else { return nil }
            s = .ended("no hello from the agent in time")
            return continuation
        }
        waiter?.resume(throwing: LinkError("no hello from the agent in time"))
    }

    func end(_ reason: String) {
        let waiter = state.withLock { s -> CheckedContinuation<AgentHandshake, any Error>? in
            switch s {
            case .waiting(let continuation, _):
                s = .ended(reason)
                return continuation
            case .arrived: s = .ended(reason)
            case .taken, .ended: break
            }
            return nil
        }
        waiter?.resume(throwing: LinkError(reason))
    }
}

/// Cuts the link's byte stream into frames of at most `maxLength` bytes.
struct LinkFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LinkFrame
    let maxLength: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // The 4-byte length comes first; a frame is copied out only once it is whole.
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        let total = 4 + Int(length)
        if buffer.readableBytes < total {
            // An impossible length is refused now, not after waiting for gigabytes.
            _ = try LinkFrame.decode(Array(buffer.readableBytesView.prefix(4))[...], maxLength: maxLength)
            return .needMoreData
        }
        let bytes = buffer.readBytes(length: total) ?? []
        guard let (frame, _) = try LinkFrame.decode(bytes[...], maxLength: maxLength) else {
            throw LinkFrame.MalformedFrame(description: "a frame shorter than its length")
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Routes each frame the agent sends: answers to their callers, the rest to the handlers. The agent may be
/// hostile (a function that escaped its engine runs as the agent), so the link holds it to the protocol and
/// to bounds: hello first and once, one exit, at most ``AgentLinkClient/maxHostCallsInFlight`` host calls at
/// once with arguments of at most ``AgentLinkClient/maxHostCallArguments`` bytes, and answers it reads. A
/// malformed stream, or a frame only a node sends, ends the link.
final class AgentFrameHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = LinkFrame
    private let triggers: PendingCalls<AgentLinkClient.Reply>
    private let requests: PendingCalls<AgentResponse>
    private let hello: HelloWait
    private let handlers: AgentLinkClient.Handlers
    /// What the agent said so far (read and written on the channel's loop only; atomics for Sendable).
    private let saidHello = Atomic<Bool>(false)
    private let saidExit = Atomic<Bool>(false)
    /// Host calls the node has not answered yet (answers come from any task).
    private let hostCallsInFlight = Atomic<Int>(0)

    init(
        triggers: PendingCalls<AgentLinkClient.Reply>, requests: PendingCalls<AgentResponse>, hello: HelloWait,
        handlers: AgentLinkClient.Handlers
    ) {
        self.triggers = triggers
        self.requests = requests
        self.hello = hello
        self.handlers = handlers
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .hello = frame {
        } else if !saidHello.load(ordering: .relaxed) {
            return fail(context, "the agent sent \(frame.kindName) before its hello")
        }
        switch frame {
        case .result(let id, let ok, let elapsed, let body, let permanent):
            triggers.resolve(
                id, AgentLinkClient.Reply(ok: ok, elapsedNanos: elapsed, body: body, permanent: permanent && !ok))
        case .reply(let id, let answer):
            requests.resolve(id, answer)
        case .log(let level, let text):
            handlers.log(Int(level), text)
        case .exited(let code, let message):
            guard !saidExit.exchange(true, ordering: .relaxed) else {
                return fail(context, "the agent reported its workload's exit twice")
            }
            handlers.exited(Int(code), String(message.prefix(AgentLinkClient.maxExitMessage)))
        case .hostCall(let id, let call):
            hostCall(id, call, on: context.channel)
        case .hello(let handshake):
            guard !saidHello.exchange(true, ordering: .relaxed) else {
                return fail(context, "the agent said hello twice")
            }
            _ = hello.arrived(handshake)
        case .welcome, .deploy, .stop, .heartbeat, .trigger, .hostAnswer:
            fail(context, "the agent sent a frame only a node sends (\(frame.kindName))")
        }
    }

    /// Hands a host call on, within the link's bounds; its answer is refused at once past them.
    private func hostCall(_ id: UInt64, _ call: LinkFrame.HostCall, on channel: any Channel) {
        let name = "\(call.service).\(call.method)"
        @Sendable func answer(_ ok: Bool, _ body: [UInt8]) {
            // An answer the agent could not take back whole (past the frame limit) is an error it can read.
            let frame =
                13 + 1 + body.count <= LinkFrame.maxLength
                ? LinkFrame.hostAnswer(id: id, ok: ok, body: body)
                : LinkFrame.hostAnswer(
                    id: id, ok: false, body: Array("\(name): the result (\(body.count) bytes) is too large".utf8))
            // An agent that does not read its answers is not queued for without end.
            guard channel.isWritable else {
                channel.close(promise: nil)
                return
            }
            channel.writeAndFlush(ByteBuffer(bytes: frame.encoded()), promise: nil)
        }
        guard call.arguments.count <= AgentLinkClient.maxHostCallArguments else {
            return answer(
                false,
                Array("\(name): the arguments are larger than \(AgentLinkClient.maxHostCallArguments) bytes".utf8))
        }
        guard hostCallsInFlight.add(1, ordering: .relaxed).newValue <= AgentLinkClient.maxHostCallsInFlight else {
            hostCallsInFlight.subtract(1, ordering: .relaxed)
            return answer(false, Array("\(name): too many host calls at once".utf8))
        }
        let once = AnswerOnce()
        handlers.hostCall(call) { ok, body in
            guard once.claim() else { return }
            self.hostCallsInFlight.subtract(1, ordering: .relaxed)
            answer(ok, body)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(
            context,
            error is LinkFrame.MalformedFrame ? "malformed link data: \(error)" : "the agent link failed: \(error)")
    }

    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        let why = "the agent link closed: \(reason)"
        triggers.end(why)
        requests.end(why)
        hello.end(why)
        context.close(promise: nil)
    }
}

/// Lets a host call be answered once, whoever answers.
private final class AnswerOnce: Sendable {
    private let answered = Atomic<Bool>(false)
    /// True the first time only.
    func claim() -> Bool { !answered.exchange(true, ordering: .relaxed) }
}
