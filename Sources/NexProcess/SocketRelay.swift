import Foundation
import Synchronization

/// Copies bytes both ways between two connected stream sockets, one thread per direction, until both
/// directions end; then closes both. A sandbox reaches a server only through such a relay: the sandbox
/// holds one end of a socketpair, the node holds the other and a TCP connection to the one server allowed.
public enum SocketRelay {
    /// A TCP connection to `host:port` (a name or an address, v4 or v6), blocking, close-on-exec, Nagle off.
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

    /// Starts relaying between `a` and `b` (both owned by the relay from now on).
    public static func start(_ a: Int32, _ b: Int32, name: String) {
        // Nagle off on TCP ends (a no-op on Unix sockets): NATS writes small frames, and Nagle with delayed
        // ACKs held each one about 40 ms (seen as a 40 ms slower first answer in the sandbox).
        var one: Int32 = 1
        for fd in [a, b] { setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let remaining = Remaining()
        for (from, to) in [(a, b), (b, a)] {
            startThread(named: name) {
                pump(from: from, to: to)
                if remaining.finishOne() {
                    close(a)
                    close(b)
                }
            }
        }
    }

    /// Copies `from` → `to` until end of file (then half-closes `to`) or an error (then shuts both down, so
    /// the other direction ends too).
    private static func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n == 0 {
                shutdown(to, Int32(SHUT_WR))
                return
            }
            if n < 0 { break }
            var offset = 0
            while offset < n {
                let written = buffer.withUnsafeBytes {
                    send(to, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL))
                }
                if written < 0, errno == EINTR { continue }
                if written <= 0 { break }
                offset += written
            }
            if offset < n { break }
        }
        shutdown(from, Int32(SHUT_RDWR))
        shutdown(to, Int32(SHUT_RDWR))
    }

    private final class Remaining: Sendable {
        private let count = Atomic<Int>(2)
        /// True for the last direction to finish.
        func finishOne() -> Bool { count.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 }
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
