import NATSProtocol
import NIOCore
import NIOSSL

/// Reads one connection: accumulates bytes, parses operations, runs the handshake, then hands messages to
/// the client in batches (one lock per read, not per message). Lives on the channel's event loop.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case awaitingInfo
        case awaitingPong
        case connected
        case closed
    }

    /// Weak: a client its user has let go of is freed, and its deinit closes this channel.
    weak var client: NATSClient?
    let infoPromise: EventLoopPromise<ServerInfo>
    let connectedPromise: EventLoopPromise<Void>
    private var parser: ProtocolParser
    private var phase = Phase.awaitingInfo
    private var cumulation: ByteBuffer?
    private var frames: [NATSMessage] = []
    private var keepAliveTask: RepeatedTask?
    private var failure: (any Error)?

    init(client: NATSClient, infoPromise: EventLoopPromise<ServerInfo>, connectedPromise: EventLoopPromise<Void>) {
        self.client = client
        self.infoPromise = infoPromise
        self.connectedPromise = connectedPromise
        self.parser = ProtocolParser(maxPayload: 64 << 20)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        do {
            if var pending = cumulation {
                cumulation = nil
                guard try completeStraddlingOperation(&pending, from: &buffer, context: context) else {
                    cumulation = pending
                    deliverFrames()
                    return
                }
                if phase == .closed { return }
            }
            while let op = try parser.next(&buffer, messages: &frames) {
                handle(op, context: context)
                if phase == .closed { return }
            }
        } catch {
            deliverFrames()
            fail(context: context, NATSError(.protocolError, "\(error)"))
            return
        }
        deliverFrames()
        if buffer.readableBytes > 0 { cumulation = buffer }
    }

    /// Finishes the operation split across two reads by copying only its own bytes from the new read (not
    /// the whole read) onto the leftover. Returns false when the new read still does not complete it.
    private func completeStraddlingOperation(
        _ pending: inout ByteBuffer, from buffer: inout ByteBuffer, context: ChannelHandlerContext
    ) throws -> Bool {
        while buffer.readableBytes > 0 {
            var take: Int
            if parser.bytesNeeded > pending.readableBytes {
                take = parser.bytesNeeded - pending.readableBytes
            } else if let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                take = nl - buffer.readerIndex + 1
            } else {
                take = buffer.readableBytes
            }
            take = min(take, buffer.readableBytes)
            var chunk = buffer.readSlice(length: take)!
            pending.writeBuffer(&chunk)
            while let op = try parser.next(&pending, messages: &frames) {
                handle(op, context: context)
                if phase == .closed { return true }
            }
            if pending.readableBytes == 0 { return true }
        }
        return false
    }

    /// Handles every operation but messages, which the parser appends to `frames` directly.
    private func handle(_ op: ServerOp, context: ChannelHandlerContext) {
        switch (phase, op) {
        case (.connected, .pong):
            deliverFrames()
            client?.pongReceived()
        case (.connected, .ping):
            // Through the outbox, so it is ordered with what callers write (some write past NIO).
            if let client {
                client.queuePong()
                return
            }
            var pong = context.channel.allocator.buffer(capacity: 6)
            ClientOp.writePong(into: &pong)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case (_, .ping):
            var pong = context.channel.allocator.buffer(capacity: 6)
            ClientOp.writePong(into: &pong)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case (.connected, .info(let info)):
            client?.serverInfoUpdated(info)
        case (.connected, .error(let text)):
            deliverFrames()
            client?.serverError(text)
        case (_, .ok):
            break
        case (.awaitingInfo, .info(let info)):
            phase = .awaitingPong
            infoPromise.succeed(info)
        case (.awaitingPong, .pong):
            phase = .connected
            connectedPromise.succeed(())
            startKeepAlive(context: context)
        case (.awaitingInfo, .error(let text)), (.awaitingPong, .error(let text)):
            fail(context: context, NATSError.fromServer(text))
        case (.awaitingPong, .info):
            break
        default:
            fail(context: context, NATSError(.protocolError, "unexpected \(op) during handshake"))
        }
    }

    /// Hands the read's messages to the client, once per read (a read is at most one receive buffer).
    private func deliverFrames() {
        guard !frames.isEmpty else { return }
        guard phase == .connected else {
            frames.removeAll()
            return
        }
        // The array itself goes to the subscription; start a new one of the same size.
        let batch = frames
        frames = []
        frames.reserveCapacity(batch.count)
        client?.deliver(batch)
    }

    private func startKeepAlive(context: ChannelHandlerContext) {
        guard let interval = client?.configuration.pingInterval.timeAmount else { return }
        let channel = context.channel
        keepAliveTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) {
            [weak client] _ in
            client?.keepAliveTick(channel)
        }
    }

    /// Fails the handshake (if still running), records why, and closes the channel.
    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        if failure == nil { failure = error }
        if let e = error as? NATSError { client?.noteDisconnect(reason: e) }
        failHandshake(error)
        context.close(promise: nil)
    }

    func failHandshake(_ error: any Error) {
        switch phase {
        case .awaitingInfo:
            infoPromise.fail(error)
            connectedPromise.fail(error)
        case .awaitingPong:
            connectedPromise.fail(error)
        case .connected, .closed:
            break
        }
        if phase != .connected { phase = .closed }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliverFrames()
        keepAliveTask?.cancel()
        keepAliveTask = nil
        failHandshake(failure ?? NATSError(.disconnected, "connection closed by the server"))
        phase = .closed
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { client?.flushOutbox() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let mapped: any Error
        if error is NATSError {
            mapped = error
        } else if isTLSError(error) {
            mapped = NATSError(.tlsFailure, "\(error)")
        } else {
            mapped = NATSError(.disconnected, "\(error)")
        }
        fail(context: context, mapped)
    }
}
