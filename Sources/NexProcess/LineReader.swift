import Foundation
import NIOCore
import NIOPosix

/// Reads a pipe line by line on a NIO event loop (no thread of its own) until end of file, then closes it.
///
/// Lines longer than `maxLine` bytes are delivered in pieces, so a workload that never prints a newline
/// cannot make the reader hold unbounded memory.
public enum LineReader {
    /// Takes ownership of `fd` (the read end of a pipe) and calls `onLine` for each line (without the newline,
    /// invalid UTF-8 repaired) and `onEnd` once at end of file. Both run on the pipe's event loop, one of NIO's
    /// shared loops: they should hand the line on, and wait only as backpressure (while `onLine` runs, the pipe
    /// is not read, so a writer that outpaces it waits; so does everything else on that loop).
    public static func start(
        fd: Int32, maxLine: Int = 16 * 1024, onLine: @escaping @Sendable (String) -> Void,
        onEnd: @escaping @Sendable () -> Void = {}
    ) {
        PipeReading.start(fd: fd, handler: { LineSplitter(maxLine: maxLine, onLine: onLine, onEnd: onEnd) }) {
            onEnd()
        }
    }
}

/// Everything readable from `fd` (the read end of a pipe) until end of file, at most `limit` bytes kept, read
/// on a NIO event loop; the descriptor is closed afterwards. Nothing for a nil `fd`.
public func readAll(_ fd: Int32?, limit: Int = 64 << 20) async -> [UInt8] {
    guard let fd else { return [] }
    return await withCheckedContinuation { continuation in
        let collector = { @Sendable in ByteCollector(limit: limit) { continuation.resume(returning: $0) } }
        PipeReading.start(fd: fd, handler: collector) { continuation.resume(returning: []) }
    }
}

/// Reading one pipe on NIO's shared event loops.
enum PipeReading {
    /// Takes ownership of `fd` and reads it with the handler `makeHandler` gives (made on the pipe's event
    /// loop). When NIO cannot take the descriptor, it is closed (by whichever side holds it) and `failed` is
    /// called instead.
    static func start<Handler: ChannelInboundHandler>(
        fd: Int32, handler makeHandler: @escaping @Sendable () -> Handler, failed: @escaping @Sendable () -> Void
    ) {
        let handOver = DescriptorHandOver()
        NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                handOver.markTaken()
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                }
            }
            .takingOwnershipOfDescriptor(input: fd)
            .whenFailure { _ in
                handOver.closeIfNotTaken(fd)
                failed()
            }
    }
}

/// Splits what a pipe gives into lines (``LineReader``).
final class LineSplitter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let maxLine: Int
    private let onLine: @Sendable (String) -> Void
    private let onEnd: @Sendable () -> Void
    /// Bytes after the last newline.
    private var pending: [UInt8] = []

    init(maxLine: Int, onLine: @escaping @Sendable (String) -> Void, onEnd: @escaping @Sendable () -> Void) {
        self.maxLine = maxLine
        self.onLine = onLine
        self.onEnd = onEnd
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending.append(contentsOf: buffer.readableBytesView)
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            onLine(String(decoding: pending[start..<newline], as: UTF8.self))
            start = newline + 1
        }
        pending.removeFirst(start)
        while pending.count >= maxLine {
            onLine(String(decoding: pending[0..<maxLine], as: UTF8.self))
            pending.removeFirst(maxLine)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
        pending = []
        onEnd()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)  // a read error ends the pipe as end of file does
    }
}

/// Keeps what a pipe gives, up to a limit (``readAll(_:limit:)``).
final class ByteCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let limit: Int
    private let onEnd: @Sendable ([UInt8]) -> Void
    private var bytes: [UInt8] = []

    init(limit: Int, onEnd: @escaping @Sendable ([UInt8]) -> Void) {
        self.limit = limit
        self.onEnd = onEnd
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let room = limit - bytes.count
        if room > 0 { bytes += buffer.readableBytesView.prefix(room) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onEnd(bytes)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
