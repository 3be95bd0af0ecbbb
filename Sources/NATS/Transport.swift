import NATSProtocol
import NIOCore
import NIOPosix
import Synchronization

/// Opens the byte stream to a server. Production uses TCP; unit tests substitute in-memory channels.
protocol Transport: Sendable {
    /// Connects to `server` on `eventLoop`, running `initialize` to set up the pipeline.
    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel
}

/// TCP with Nagle off: NATS batches writes itself.
struct TCPTransport: Transport {
    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        try await ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout.timeAmount)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer(initialize)
            .connect(host: server.host, port: server.port).get()
    }
}

/// A socket that is already connected (``NATSClient/Configuration/connectedSocket``), used for the first
/// connection only: a descriptor number is never reused, since the kernel may have given it to another file.
final class DescriptorTransport: Transport {
    private let descriptor: Mutex<Int32?>

    init(_ descriptor: Int32) {
        self.descriptor = Mutex(descriptor)
    }

    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        guard
            let fd = descriptor.withLock({ d in
                defer { d = nil }
                return d
            })
        else {
            throw NATSError(.connectionClosed, "the connected socket was used and has closed")
        }
        return try await ClientBootstrap(group: eventLoop)
            .channelInitializer(initialize)
            .withConnectedSocket(fd).get()
    }
}
