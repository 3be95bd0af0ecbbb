import NATSProtocol
import NIOCore
import NIOPosix

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
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer(initialize)
            .connect(host: server.host, port: server.port).get()
    }
}
