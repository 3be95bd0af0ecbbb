import Foundation
import Synchronization

/// Copies bytes both ways between two connected stream sockets, one thread per direction, until both
/// directions end; then closes both. A sandbox reaches a server only through such a relay: the sandbox
/// holds one end of a socketpair, the node holds the other and a TCP connection to the one server allowed.
public enum SocketRelay {
    /// A TCP connection to `host:port` (numeric IPv4), blocking, close-on-exec.
    public static func connectTCP(host: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RelayError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw RelayError("not an IPv4 address: \(host)")
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RelayError("connect to \(host):\(port): \(reason)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    /// Starts relaying between `a` and `b` (both owned by the relay from now on).
    public static func start(_ a: Int32, _ b: Int32, name: String) {
        let remaining = Remaining()
        for (from, to) in [(a, b), (b, a)] {
            let thread = Thread {
                pump(from: from, to: to)
                if remaining.finishOne() {
                    close(a)
                    close(b)
                }
            }
            thread.name = name
            thread.start()
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
