import Foundation
import Synchronization

/// A TCP listener that speaks just enough NATS to complete a handshake (INFO, then PONG to the first PING)
/// and then never answers again — for testing stale-connection detection. Runs on its own thread.
public final class SilentServer: Sendable {
    public let port: Int
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)

    private init(port: Int, listener: Int32) {
        self.port = port
        self.listener = listener
    }

    /// Starts listening on an ephemeral loopback port.
    public static func start() async throws -> SilentServer {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw TestEnvironment.Failure("cannot listen") }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        let server = SilentServer(port: Int(UInt16(bigEndian: addr.sin_port)), listener: fd)
        Thread.detachNewThread { server.acceptLoop() }
        return server
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let conn = accept(listener, nil, nil)
            guard conn >= 0 else { return }
            let info =
                "INFO {\"server_id\":\"SILENT\",\"version\":\"2.15.1\",\"max_payload\":1048576,\"headers\":true}\r\n"
            _ = info.withCString { send(conn, $0, strlen($0), 0) }
            var buf = [UInt8](repeating: 0, count: 4096)
            var seen = ""
            while !seen.contains("PING") {
                let n = recv(conn, &buf, buf.count, 0)
                if n <= 0 { break }
                seen += String(decoding: buf[..<n], as: UTF8.self)
            }
            _ = "PONG\r\n".withCString { send(conn, $0, 6, 0) }
            // Keep reading and ignore everything: the connection is alive but silent.
            while recv(conn, &buf, buf.count, 0) > 0 {}
            close(conn)
        }
    }

    /// Stops accepting.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}
