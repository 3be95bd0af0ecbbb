import Foundation

/// A host that only this test can reach: a network namespace joined to this one by a veth pair, with an
/// address inside it and a TCP listener on a port. Tests that prove a sandbox cannot reach "another host"
/// aim at it, so a sandbox that leaked would reach this namespace, never a real address.
///
/// Needs root (and iproute2). ``make(port:)`` throws when the namespace cannot be made; ``remove()`` deletes
/// the namespace (the veth pair goes with it).
public final class TestNetworkHost: Sendable {
    /// The address inside the namespace (in 10.231.0.0/16, used by nothing else here).
    public let address: String
    public let port: Int
    private let namespace: String
    private let listener: PeerProcess

    private init(address: String, port: Int, namespace: String, listener: PeerProcess) {
        self.address = address
        self.port = port
        self.namespace = namespace
        self.listener = listener
    }

    /// Whether this process may make network namespaces (root with iproute2).
    public static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: ip) }

    static let ip = "/usr/sbin/ip"

    /// Makes the namespace, its link and address, and a listener on `port` inside it.
    public static func make(port: Int) async throws -> TestNetworkHost {
        let tag = String(UInt32.random(in: 0..<0xFFFF_FFFF), radix: 16)
        let namespace = "nextest-" + tag
        let subnet = Int.random(in: 0..<16_384)  // one /30 of 10.231.0.0/16
        let base = subnet * 4
        let (host, inside) = ("10.231.\(base / 256).\(base % 256 + 1)", "10.231.\(base / 256).\(base % 256 + 2)")
        let (outerLink, innerLink) = ("nxh" + tag.prefix(8), "nxn" + tag.prefix(8))
        let steps: [[String]] = [
            ["netns", "add", namespace],
            ["link", "add", outerLink, "type", "veth", "peer", "name", innerLink],
            ["link", "set", innerLink, "netns", namespace],
            ["addr", "add", host + "/30", "dev", outerLink],
            ["link", "set", outerLink, "up"],
            ["-n", namespace, "addr", "add", inside + "/30", "dev", innerLink],
            ["-n", namespace, "link", "set", innerLink, "up"],
            ["-n", namespace, "link", "set", "lo", "up"],
        ]
        do {
            for step in steps { try await TestEnvironment.run(ip, step) }
            let listener = try await PeerProcess.start(
                ip,
                [
                    "netns", "exec", namespace, "python3", "-c",
                    """
                    import socket, sys
                    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("\(inside)", \(port))); s.listen(16); print("listening", flush=True)
                    while True:
                        c, _ = s.accept(); c.close()
                    """,
                ])
            _ = try await listener.waitForLines(1)
            return TestNetworkHost(address: inside, port: port, namespace: namespace, listener: listener)
        } catch {
            // Undoing a half-made host: a step that never ran fails here; the setup's error is what matters.
            _ = try? await TestEnvironment.runAllowingFailure(ip, ["netns", "delete", namespace])
            _ = try? await TestEnvironment.runAllowingFailure(ip, ["link", "delete", outerLink])
            throw error
        }
    }

    /// Whether this process (outside any sandbox) reaches the listener: proves the host is there, so a probe
    /// that is refused inside a sandbox was refused by the sandbox.
    public func isReachable() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, address, &target.sin_addr)
        return withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Stops the listener and deletes the namespace (its end of the veth pair, and so the pair, goes too).
    public func remove() async {
        listener.signal(SIGKILL)
        // Best effort, as cleanup: a listener already gone or a namespace already deleted is fine.
        _ = try? await listener.waitForExit()
        _ = try? await TestEnvironment.runAllowingFailure(Self.ip, ["netns", "delete", namespace])
    }

    /// Runs `body` with a test host listening on `port`, removed afterwards.
    public static func with<T>(port: Int, _ body: (TestNetworkHost) async throws -> T) async throws -> T {
        let host = try await make(port: port)
        do {
            let result = try await body(host)
            await host.remove()
            return result
        } catch {
            await host.remove()
            throw error
        }
    }
}
