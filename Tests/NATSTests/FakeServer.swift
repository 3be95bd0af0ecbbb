import Logging
import NIOCore
import NIOEmbedded
import Synchronization

@testable import NATS
@testable import NATSProtocol

/// A scripted NATS server on `NIOAsyncTestingChannel`s: the test writes server bytes and reads what the
/// client wrote. Time is manual: scheduled work (pings, timeouts) runs only on `advanceTime`.
final class FakeServer: Transport, Sendable {
    let loop = NIOAsyncTestingEventLoop()
    private let connections: AsyncStream<NIOAsyncTestingChannel>
    private let yield: AsyncStream<NIOAsyncTestingChannel>.Continuation
    private let refuse = Atomic<Bool>(false)

    init() {
        (connections, yield) = AsyncStream.makeStream()
    }

    /// A client using this fake server.
    func makeClient(_ configure: (inout NATSClient.Configuration) -> Void = { _ in }) -> NATSClient {
        var config = NATSClient.Configuration(servers: ["nats://fake:4222"])
        config.reconnect.reconnectWait = .milliseconds(1)
        config.reconnect.jitter = .zero
        configure(&config)
        return NATSClient(
            configuration: config, logger: Logger(label: "fake", factory: { _ in SwiftLogNoOpLogHandler() }),
            eventLoopGroup: loop, transport: self)
    }

    func connect(
        to server: ServerAddress, on eventLoop: any EventLoop, timeout: Duration,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> TransportConnection {
        if refuse.load(ordering: .relaxed) { throw NATSError(.noServers, "refused") }
        let channel = NIOAsyncTestingChannel(loop: loop)
        try await loop.executeInContext { _ = initialize(channel) }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4222)).get()
        yield.yield(channel)
        return TransportConnection(channel: channel, directWriter: nil)
    }

    /// Makes new connection attempts fail.
    func refuseConnections(_ value: Bool) { refuse.store(value, ordering: .relaxed) }

    /// The next connection the client opens.
    func nextConnection() async throws -> Connection {
        for await channel in connections { return Connection(channel: channel) }
        throw NATSError(.connectionClosed, "no more connections")
    }

    /// One client connection as seen from the server side.
    final class Connection: Sendable {
        let channel: NIOAsyncTestingChannel
        private let received = Mutex<String>("")

        init(channel: NIOAsyncTestingChannel) { self.channel = channel }

        func send(_ text: String) async throws {
            try await channel.writeInbound(ByteBuffer(string: text))
        }

        /// Reads what the client wrote until `needle` appears; returns everything read up to and including it.
        @discardableResult
        func expect(_ needle: String, timeout: Duration = .seconds(5)) async throws -> String {
            let deadline = ContinuousClock.now + timeout
            while true {
                if let r = received.withLock({ buf -> String? in
                    guard let range = buf.range(of: needle) else { return nil }
                    let head = String(buf[..<range.upperBound])
                    buf.removeSubrange(..<range.upperBound)
                    return head
                }) {
                    return r
                }
                if let b = try await channel.readOutbound(as: ByteBuffer.self) {
                    received.withLock { $0 += String(buffer: b) }
                    continue
                }
                guard ContinuousClock.now < deadline else {
                    throw NATSError(.timeout, "client never wrote \(needle); got: \(received.withLock { $0 })")
                }
                try await Task.sleep(for: .milliseconds(2))
            }
        }

        /// Sends INFO, reads CONNECT and PING, answers PONG.
        func handshake(info: String = FakeServer.info) async throws -> String {
            try await send("INFO \(info)\r\n")
            let hello = try await expect("PING\r\n")
            try await send("PONG\r\n")
            return hello
        }
    }

    static let info = #"{"server_id":"FAKE","version":"2.15.1","max_payload":1048576,"headers":true,"proto":1}"#
}
