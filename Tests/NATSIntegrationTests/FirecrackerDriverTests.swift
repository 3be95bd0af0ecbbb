import Foundation
import NATSTestSupport
import NexModels
import Testing

@testable import NexSandbox

/// The firecracker driver against a fake API server (Tests/Peers/python/fake_firecracker.py): no VM can run
/// here, so what is checked is the API sequence and the node's side of the guest's vsock connections.
@Suite(.timeLimit(.minutes(1))) struct FirecrackerDriverTests {
    @Test func configuresAndStartsTheVMThroughItsAPI() async throws {
        let python = try #require(TestEnvironment.python, "run scripts/setup.sh")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fc-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let fake = TestEnvironment.packageRoot.appendingPathComponent(
                "Tests/Peers/python/fake_firecracker.py"
            ).path
            let firecracker = dir + "/firecracker"
            try "#!/bin/sh\nexec \(python) \(fake) \"$@\"\n".write(
                toFile: firecracker, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: firecracker)

            var link: [Int32] = [0, 0]
            #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &link) == 0)
            defer { close(link[0]) }
            let driver = FirecrackerDriver(
                firecracker: firecracker, kernel: "/k/vmlinux", rootfs: "/r/rootfs.ext4")
            let spec = AgentLaunchSpec(
                agentID: "agent1", agentExecutable: "/unused", workDirectory: dir, memoryMiB: 128,
                vcpuCount: 2,
                linkDescriptor: link[1])
            try "the artifact".write(toFile: dir + "/workload", atomically: true, encoding: .utf8)
            let sandbox = try #require(try await driver.launch(spec) as? FirecrackerSandbox)
            close(link[1])
            #expect(sandbox.socketDirectory.utf8.count < 40 && sandbox.workDirectoryInside == "/tmp/nex")

            // The API calls, in order, with their bodies.
            let log = sandbox.socketDirectory + "/firecracker.sock.requests"
            func entries() -> [[String: Any]] {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
                    .compactMap {
                        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                    }
            }
            let calls = entries().compactMap { $0["path"] as? String }
            #expect(calls == ["/machine-config", "/boot-source", "/drives/rootfs", "/vsock", "/actions"])
            let bodies = Dictionary(
                entries().compactMap { e in
                    (e["path"] as? String).map { ($0, e["body"] as? [String: Any] ?? [:]) }
                },
                uniquingKeysWith: { a, _ in a })
            #expect(bodies["/machine-config"]?["vcpu_count"] as? Int == 2)
            #expect(bodies["/machine-config"]?["mem_size_mib"] as? Int == 128)
            let boot = bodies["/boot-source"]?["boot_args"] as? String ?? ""
            #expect(bodies["/boot-source"]?["kernel_image_path"] as? String == "/k/vmlinux")
            #expect(
                boot.contains("init=/init") && boot.contains("nex.env.NEX_AGENT_ID=agent1"), "\(boot)")
            // The agent is told who it is and where its link is, and nothing else.
            #expect(
                boot.contains("nex.env.NEX_AGENT_LINK_VSOCK_PORT=4223") && !boot.contains("NATS"), "\(boot)"
            )
            #expect(bodies["/drives/rootfs"]?["is_read_only"] as? Bool == true)
            #expect(bodies["/drives/rootfs"]?["path_on_host"] as? String == "/r/rootfs.ext4")
            #expect(bodies["/actions"]?["action_type"] as? String == "InstanceStart")

            // The guest's side: port 4223 reaches the node's end of the agent's link.
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = buffer.withUnsafeMutableBytes { read(link[0], $0.baseAddress, $0.count) }
            #expect(n > 0 && String(decoding: buffer[0..<max(n, 0)], as: UTF8.self) == "hello-link")
            // Port 4224: the guest fetches the artifact.
            try await eventually("the guest fetched the artifact") {
                entries().contains { ($0["artifact"] as? String) == "the artifact" }
            }
            #expect(boot.contains("nex.env.NEX_AGENT_CONTROL_VSOCK_PORT=4224"))

            await sandbox.destroy(grace: .seconds(2))
            #expect(try await sandbox.allowConnections(to: []) == [])
        }
    }

    @Test func anAPIErrorFailsTheLaunch() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "fc-\(UUID().uuidString)"
        ).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A "firecracker" that never opens its API socket (and outlives any wait for it).
        let firecracker = dir + "/firecracker"
        try "#!/bin/sh\nsleep 600\n".write(toFile: firecracker, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: firecracker)
        let driver = FirecrackerDriver(firecracker: firecracker, kernel: "/k", rootfs: "/r")
        let spec = AgentLaunchSpec(
            agentID: "a", agentExecutable: "/unused", workDirectory: dir, memoryMiB: 64, vcpuCount: 1,
            linkDescriptor: -1)
        // The launch gives up on the socket (its own 5 s bound), long before the fake ends by itself: the
        // error says so. (A wall-clock bound here failed on a loaded machine, whose start-up stalls for 20 s.)
        let error = await #expect(throws: SandboxError.self) { _ = try await driver.launch(spec) }
        #expect(error?.description.contains("no API socket at") == true, "\(String(describing: error))")
    }
}
