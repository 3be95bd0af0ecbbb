import CNexSpawn
import Foundation
import NIOCore
import NIOPosix
import NexProcess

/// Accepts connections on a listening socket on NIO's event loops, until closed, and hands each to a handler
/// as a channel that does not read yet (`autoRead` off, the remote's half-close allowed): a relay lets it read
/// once it is glued to its other end.
final class Acceptor: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    /// Takes ownership of `listener` (a bound, listening stream socket) and starts accepting.
    static func start(listener: Int32, handle: @escaping @Sendable (any Channel) -> Void) async throws -> Acceptor {
        let handOver = DescriptorHandOver()
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelInitializer { server in
                    handOver.markTaken()
                    return server.eventLoop.makeSucceededVoidFuture()
                }
                .childChannelOption(.autoRead, value: false)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelInitializer { child in
                    handle(child)
                    return child.eventLoop.makeSucceededVoidFuture()
                }
                .withBoundSocket(listener)
                .get()
            return Acceptor(channel: channel)
        } catch {
            handOver.closeIfNotTaken(listener)
            throw SandboxError("cannot accept connections: \(error)")
        }
    }

    /// Stops accepting (connections already handed over live on).
    func close() { channel.close(promise: nil) }
}

/// Lets a sandbox with no network reach one server: a listening socket made *inside* the sandbox's network
/// namespace (on a loopback address there), whose connections the node relays to the real server from the
/// host's side. The workload connects to what looks like a local server; nothing else is reachable.
enum PortForwarder {
    /// Listens on `address:port` in the network namespace of process `pid` and relays every connection to
    /// `target` (connected from the node's own namespace).
    static func start(pid: Int32, address: String, port: Int, target: (host: String, port: Int)) async throws
        -> Acceptor
    {
        let listener = try await listenInNamespace(of: pid, address: address, port: port)
        return try await Acceptor.start(listener: listener) { client in
            // Unreachable target: the client's connection closing is the answer it gets.
            _ = SocketRelay.relay(client, toHost: target.host, port: target.port)
        }
    }

    /// A listening TCP socket created on a thread that joined the network namespace of `pid` (a socket stays
    /// in the namespace it was made in; the thread then ends, so no other code ever runs in that namespace).
    /// A thread of its own, not a pool's: joining a namespace changes the thread for good.
    private static func listenInNamespace(of pid: Int32, address: String, port: Int) async throws -> Int32 {
        let result: Result<Int32, SandboxError> = await withCheckedContinuation { continuation in
            startThread(named: "nex-netns") {
                continuation.resume(returning: makeListener(pid: pid, address: address, port: port))
            }
        }
        return try result.get()
    }

    private static func makeListener(pid: Int32, address: String, port: Int) -> Result<Int32, SandboxError> {
        func failure(_ what: String) -> Result<Int32, SandboxError> {
            .failure(SandboxError("\(what) for \(address):\(port) in the sandbox: \(String(cString: strerror(errno)))"))
        }
        let namespace = open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC)
        guard namespace >= 0 else { return failure("open the network namespace") }
        defer { Foundation.close(namespace) }
        guard nex_setns_net(namespace) == 0 else {
            return failure("join the network namespace")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return failure("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var bound = sockaddr_in()
        bound.sin_family = sa_family_t(AF_INET)
        bound.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, address, &bound.sin_addr)
        let ok = withUnsafePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard ok, listen(fd, 64) == 0 else {
            let result = failure("listen")
            Foundation.close(fd)
            return result
        }
        return .success(fd)
    }
}

extension Acceptor {
    /// A listening Unix socket at `path` (replacing a stale one).
    static func listenUnix(path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SandboxError("socket: \(String(cString: strerror(errno)))") }
        unlink(path)
        let bound: Int32
        do { bound = try withUnixSocketAddress(path) { bind(fd, $0, $1) } } catch {
            // A path too long for a socket address: errno would name some earlier failure.
            Foundation.close(fd)
            throw SandboxError("listen on \(path): \(error)")
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Foundation.close(fd)
            throw SandboxError("listen on \(path): \(reason)")
        }
        return fd
    }
}
