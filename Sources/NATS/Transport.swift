import NATSProtocol
import NIOCore
import NIOPosix
import Synchronization

#if os(Linux)
    import Glibc
#endif

/// Opens the byte stream to a server. Production uses TCP; unit tests substitute in-memory channels.
protocol Transport: Sendable {
    /// Connects to `server` on `eventLoop`, running `initialize` to set up the pipeline.
    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> TransportConnection
}

/// What a transport opened.
struct TransportConnection {
    var channel: any Channel
    /// A duplicate of the channel's socket, owned by the client from here on, for a lone request written
    /// from the caller's thread (see `ClientState.directWriter`); nil when the transport has none.
    var directWriter: Int32?

    /// Closes a ``directWriter`` that will not be used.
    static func closeDirectWriter(_ fd: Int32) {
        #if os(Linux)
            _ = Glibc.close(fd)
        #endif
    }
}

/// TCP with Nagle off: NATS batches writes itself. The socket is connected here and then handed to NIO, so
/// that the client can keep a duplicate of it to write to directly.
struct TCPTransport: Transport {
    /// ``NATSClient/Configuration/dialFilter``.
    var dialFilter: (@Sendable (NATSClient.DialTarget) -> String?)?

    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> TransportConnection {
        #if os(Linux)
            let socket = try await NIOThreadPool.singleton.runIfActive {
                try TCPConnector.connect(
                    host: server.host, port: server.port, timeout: timeout, filter: dialFilter)
            }
            let duplicate = fcntl(socket, F_DUPFD_CLOEXEC, 0)
            do {
                let channel = try await ClientBootstrap(group: eventLoop)
                    .channelInitializer(initialize)
                    .withConnectedSocket(socket).get()
                return TransportConnection(channel: channel, directWriter: duplicate >= 0 ? duplicate : nil)
            } catch {
                // `socket` is NIO's once the channel exists (it closed it); before that, only making it
                // non-blocking can fail. It is not closed here: a leak beats closing a number reused since.
                if duplicate >= 0 { close(duplicate) }
                throw error
            }
        #else
            if dialFilter != nil {
                throw NATSError(.connectionClosed, "a dial filter needs the Linux transport")
            }
            let channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout.timeAmount)
                .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer(initialize)
                .connect(host: server.host, port: server.port).get()
            return TransportConnection(channel: channel, directWriter: nil)
        #endif
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
    ) async throws -> TransportConnection {
        guard
            let fd = descriptor.withLock({ d in
                defer { d = nil }
                return d
            })
        else {
            throw NATSError(.connectionClosed, "the connected socket was used and has closed")
        }
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelInitializer(initialize)
            .withConnectedSocket(fd).get()
        return TransportConnection(channel: channel, directWriter: nil)
    }
}
