public import NIOCore
import NIOPosix
import Synchronization

/// The node's side of an agent link: sends a function's triggers and matches the results to the callers.
///
/// The socket lives on a NIO event loop, the one the node's NATS connection uses: a trigger taken from
/// NATS is written, and its result read, resumed and answered, on that one thread. (A reader thread of its
/// own cost a thread wake-up per trigger, in the middle of every function's latency.)
public final class AgentLinkClient: Sendable {
    /// What the function answered.
    public struct Reply: Sendable {
        /// False when the function failed; `body` is then the error text.
        public var ok: Bool
        /// Time the function ran.
        public var elapsedNanos: Int64
        /// The reply, or the error text.
        public var body: [UInt8]
    }

    private let calls: PendingCalls
    private let channel: any Channel
    private let ticker: RepeatedTask

    private init(calls: PendingCalls, channel: any Channel, ticker: RepeatedTask) {
        self.calls = calls
        self.channel = channel
        self.ticker = ticker
    }

    /// Takes ownership of `descriptor` (the node's end of a connected stream socket pair) and reads results
    /// from it on `eventLoop`. The socket becomes a NIO socket channel as it is (no duplicate descriptor that
    /// a child process could inherit). `onLog` gets each line the workload logs (level, text), on the loop, in
    /// order with the results.
    /// `writeLimit`: the bytes of triggers that may wait for an agent that does not read its link before more
    /// are refused.
    public static func start(
        descriptor: Int32, on eventLoop: any EventLoop, writeLimit: Int = AgentLinkClient.defaultWriteLimit,
        onLog: @escaping @Sendable (_ level: Int, _ text: [UInt8]) -> Void = { _, _ in }
    ) async throws -> AgentLinkClient {
        let calls = PendingCalls()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .channelOption(.writeBufferWaterMark, value: .init(low: writeLimit / 2, high: writeLimit))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(LinkFrameDecoder()), LinkResultHandler(calls: calls, onLog: onLog))
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
            calls.expire()
        }
        channel.closeFuture.whenComplete { _ in
            ticker.cancel()
            calls.end("the agent link closed: the other end closed the link")
        }
        return AgentLinkClient(calls: calls, channel: channel, ticker: ticker)
    }

    /// The default of the bytes of triggers that may wait for an agent (many times the largest NATS payload).
    public static let defaultWriteLimit = 64 << 20

    /// Runs the function for a message on `subject`; throws when the link is gone, when more than the link's
    /// write limit already waits for the agent to read it (it is stuck or far behind: the node's memory is not
    /// the place to queue for it), or when no result came within `timeout` (checked about once a second).
    public func trigger(subject: String, payload: [UInt8], traceParent: String? = nil, timeout: Duration)
        async throws -> Reply
    {
        try await withCheckedThrowingContinuation { continuation in
            guard let id = calls.register(continuation, deadline: .now + timeout) else { return }
            let frame = LinkFrame.trigger(id: id, subject: subject, payload: payload, traceParent: traceParent)
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
            calls.fail(id, LinkError("the agent is not reading its link (its write limit waits for it)"))
            return
        }
        channel.writeAndFlush(ByteBuffer(bytes: frame.encoded())).whenFailure { error in
            self.calls.fail(id, LinkError("the agent link is closed: \(error)"))
        }
    }

    /// Closes the link; calls still waiting fail.
    public func close() {
        ticker.cancel()
        channel.close(promise: nil)
        calls.end("the agent link was closed")
    }
}

/// The calls waiting for their results, by id; the one owner of that table.
final class PendingCalls: Sendable {
    private struct Pending {
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<AgentLinkClient.Reply, any Error>
    }

    private struct State {
        var nextID: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        var ended: String?
    }

    private let state = Mutex(State())

    /// A new call's id; nil (and the continuation failed) when the link has ended.
    func register(
        _ continuation: CheckedContinuation<AgentLinkClient.Reply, any Error>, deadline: ContinuousClock.Instant
    ) -> UInt64? {
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

    func resolve(_ id: UInt64, _ reply: AgentLinkClient.Reply) {
        state.withLock { $0.pending.removeValue(forKey: id) }?.continuation.resume(returning: reply)
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
        for waiter in expired { waiter.continuation.resume(throwing: LinkError("the function did not answer in time")) }
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

/// Cuts the link's byte stream into frames.
struct LinkFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LinkFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // The 4-byte length comes first; a frame is copied out only once it is whole.
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        let total = 4 + Int(length)
        if buffer.readableBytes < total {
            // An impossible length is refused now, not after waiting for gigabytes.
            _ = try LinkFrame.decode(Array(buffer.readableBytesView.prefix(4))[...])
            return .needMoreData
        }
        let bytes = buffer.readBytes(length: total) ?? []
        guard let (frame, _) = try LinkFrame.decode(bytes[...]) else {
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

/// Hands each result to its caller and each log line to `onLog`; a malformed stream ends the link.
final class LinkResultHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = LinkFrame
    private let calls: PendingCalls
    private let onLog: @Sendable (Int, [UInt8]) -> Void

    init(calls: PendingCalls, onLog: @escaping @Sendable (Int, [UInt8]) -> Void) {
        self.calls = calls
        self.onLog = onLog
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .result(let id, let ok, let elapsed, let body):
            calls.resolve(id, AgentLinkClient.Reply(ok: ok, elapsedNanos: elapsed, body: body))
        case .log(let level, let text):
            onLog(Int(level), text)
        case .trigger:
            break  // only the node sends triggers
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason =
            error is LinkFrame.MalformedFrame ? "malformed link data: \(error)" : "the agent link failed: \(error)"
        calls.end("the agent link closed: \(reason)")
        context.close(promise: nil)
    }
}
