import CNexSpawn
import Foundation
import NexProcess
import Synchronization

/// Accepts connections on a listening socket on a thread of its own and hands each to `handle`, until
/// closed. The descriptor is touched only while it is ours (its number may be reused once closed).
final class Acceptor: Sendable {
    private let listener: Int32
    private let state = Mutex((closing: false, descriptorClosed: false))

    /// Takes ownership of `listener` and starts accepting.
    init(listener: Int32, name: String, handle: @escaping @Sendable (Int32) -> Void) {
        self.listener = listener
        startThread(named: name) { [self] in acceptLoop(handle) }
    }

    /// Stops accepting (connections already handed over live on).
    func close() {
        state.withLock { s in
            guard !s.closing else { return }
            s.closing = true
            if !s.descriptorClosed { shutdown(listener, Int32(SHUT_RDWR)) }
        }
    }

    private func acceptLoop(_ handle: (Int32) -> Void) {
        while true {
            let client = nex_accept_cloexec(listener)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break
            }
            handle(client)
        }
        state.withLock { s in
            s.descriptorClosed = true
            Foundation.close(listener)
        }
    }
}

/// Lets a sandbox with no network reach one server: a listening socket made *inside* the sandbox's network
/// namespace (on a loopback address there), whose connections the node relays to the real server from the
/// host's side. The workload connects to what looks like a local server; nothing else is reachable.
enum PortForwarder {
    /// Listens on `address:port` in the network namespace of process `pid` and relays every connection to
    /// `target` (connected from the node's own namespace, on the acceptor's thread).
    static func start(pid: Int32, address: String, port: Int, target: (host: String, port: Int)) async throws
        -> Acceptor
    {
        let listener = try await listenInNamespace(of: pid, address: address, port: port)
        return Acceptor(listener: listener, name: "nex-forward-\(port)") { client in
            Acceptor.relay(client, to: target)
        }
    }

    /// A listening TCP socket created on a thread that joined the network namespace of `pid` (a socket stays
    /// in the namespace it was made in; the thread then ends, so no other code ever runs in that namespace).
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
    /// Relays an accepted connection to `target` (dropped when the target cannot be reached).
    static func relay(_ client: Int32, to target: (host: String, port: Int)) {
        // Unreachable target: the client's connection closing is the answer it gets.
        guard let upstream = try? SocketRelay.connectTCP(host: target.host, port: target.port) else {
            Foundation.close(client)
            return
        }
        SocketRelay.start(client, upstream, name: "nex-forward")
    }

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
