import Foundation
public import NIOCore
import NIOPosix

/// Copies bytes both ways between two connected stream sockets on NIO's event loops, until both directions
/// end; then closes both. A sandbox reaches a server only through such a relay: the sandbox holds one end of
/// a connection, the node holds the other and a TCP connection to the one server allowed.
public enum SocketRelay {
    /// A TCP connection to `host:port` (a name or an address, v4 or v6), blocking, close-on-exec, Nagle off:
    /// for the agent in a VM, whose link is a blocking socket.
    public static func connectTCP(host: String, port: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw RelayError("cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var reason = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 { continue }
            if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            reason = String(cString: strerror(errno))
            close(fd)
        }
        throw RelayError("connect to \(host):\(port): \(reason)")
    }

    /// Relays `channel` (connected, not reading yet: `autoRead` off) to the connected stream socket `fd`,
    /// which the relay owns from now on. Fails (and closes both) when `fd` cannot become a channel.
    public static func relay(_ channel: any Channel, toDescriptor fd: Int32) -> EventLoopFuture<Void> {
        let handOver = DescriptorHandOver()
        return glue(channel, handOver: handOver) { bootstrap in bootstrap.withConnectedSocket(fd) }
            .flatMapErrorThrowing { error in
                handOver.closeIfNotTaken(fd)
                throw error
            }
    }

    /// Relays `channel` (connected, not reading yet) to a new TCP connection to `host:port`. Fails (and closes
    /// `channel`) when the server cannot be reached.
    public static func relay(_ channel: any Channel, toHost host: String, port: Int) -> EventLoopFuture<Void> {
        glue(channel, handOver: nil) { bootstrap in bootstrap.connect(host: host, port: port) }
    }

    /// Relays between the connected stream sockets `a` and `b`, both owned by the relay from now on.
    public static func relay(_ a: Int32, _ b: Int32) -> EventLoopFuture<Void> {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handOver = DescriptorHandOver()
        return ClientBootstrap(group: loop).relayOptions
            .channelInitializer { channel in
                handOver.markTaken()
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .withConnectedSocket(a)
            .flatMapError { error in
                handOver.closeIfNotTaken(a)
                close(b)
                return loop.makeFailedFuture(error)
            }
            .flatMap { channel in relay(channel, toDescriptor: b) }
    }

    /// Glues `channel` to the partner `connect` makes (on the same event loop), then lets both read.
    /// `handOver`, when the partner is made from a descriptor, learns whether NIO took it.
    private static func glue(
        _ channel: any Channel, handOver: DescriptorHandOver?,
        connect: @escaping @Sendable (ClientBootstrap) -> EventLoopFuture<any Channel>
    ) -> EventLoopFuture<Void> {
        let loop = channel.eventLoop
        return loop.flatSubmit {
            let (mine, theirs) = RelayHandler.matchedPair()
            do { try channel.pipeline.syncOperations.addHandler(mine) } catch {
                channel.close(promise: nil)
                return loop.makeFailedFuture(error)
            }
            let partnerHandler = NIOLoopBound(theirs, eventLoop: loop)
            let bootstrap = ClientBootstrap(group: loop).relayOptions.channelInitializer { partner in
                handOver?.markTaken()
                return partner.eventLoop.makeCompletedFuture {
                    try partner.pipeline.syncOperations.addHandler(partnerHandler.value)
                }
            }
            return connect(bootstrap).flatMap { partner in
                // Both ends are glued: now they may read (a read before would have had nowhere to go).
                channel.setOption(.autoRead, value: true).and(partner.setOption(.autoRead, value: true)).map { _ in }
            }.flatMapErrorThrowing { error in
                channel.close(promise: nil)
                throw error
            }
        }
    }
}

extension ClientBootstrap {
    /// A relay's end: it reads only once glued, and its input ending closes only the partner's output.
    var relayOptions: ClientBootstrap {
        channelOption(.autoRead, value: false).channelOption(.allowRemoteHalfClosure, value: true)
    }
}

/// One end of a relay: what its channel reads, its partner writes. Input that ends becomes the partner's
/// output ending (a half-close); a channel that closes closes its partner. A partner that cannot take more
/// stops this end reading until it can (backpressure). Both ends of a pair share one event loop.
final class RelayHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var readWaiting = false

    static func matchedPair() -> (RelayHandler, RelayHandler) {
        let (a, b) = (RelayHandler(), RelayHandler())
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.context?.write(data, promise: nil) }

    func channelReadComplete(context: ChannelHandlerContext) { partner?.context?.flush() }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed = event as? ChannelEvent { partner?.context?.close(mode: .output, promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)  // and so the partner: a broken relay ends both ways
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.readWaiting {
            partner.readWaiting = false
            partner.context?.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.context?.channel.isWritable ?? false {
            context.read()
        } else {
            readWaiting = true
        }
    }
}

/// Why a relay could not be set up.
public struct RelayError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Calls `body` with `path` as a Unix socket address; throws when the path does not fit one.
public func withUnixSocketAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) throws
    -> R
{
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        throw RelayError("socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        for (index, byte) in bytes.enumerated() { raw[index] = byte }
    }
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
