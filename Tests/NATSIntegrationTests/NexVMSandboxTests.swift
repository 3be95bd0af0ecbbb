import Foundation
import NATS
import NATSTestSupport
import NexControlClient
import NexModels
import NexSandbox
import Testing

@testable import NexNode

/// Acceptance scenario 12 under the `vm` driver: real QEMU microVMs (software emulation here) restored from
/// the node's template snapshot, each running a real agent, with the static probe program inside.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct NexVMSandboxTests {
        /// The kernel (shared with `MicroVMTests`) and a root filesystem with the agent as built now.
        static func vmFiles() async throws -> (kernel: String, rootfs: String) {
            let build = TestEnvironment.packageRoot.appendingPathComponent(".build").path
            let kernel = try await MicroVM.prepareKernel(in: build + "/vm-kernel")
            let agent = TestEnvironment.builtProduct("nex-agent")
            let rootfs = build + "/vm-rootfs/rootfs-\(UUID().uuidString).ext4"
            try FileManager.default.createDirectory(
                atPath: (rootfs as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = try await RootfsBuilder(agent: agent).build(to: rootfs)
            return (kernel.kernel, rootfs)
        }

        func withVMNode<T>(
            _ configure: (inout NodeConfiguration) -> Void = { _ in },
            _ body: (NexWorkloadTests.Harness) async throws -> T
        ) async throws -> T {
            try #require(
                TestEnvironment.shouldRun(needing: MicroVM.findQEMU() != nil),
                "qemu-system-x86 missing: scripts/setup.sh")
            let files = try await Self.vmFiles()
            defer { try? FileManager.default.removeItem(atPath: files.rootfs) }
            return try await NexWorkloadTests().withNode({
                $0.noSandbox = false
                $0.sandbox = .vm
                $0.kernelFilepath = files.kernel
                $0.rootfsFilepath = files.rootfs
                $0.workloadTypes = [.native, .v8]
                $0.machineTemplate.memsizeMib = 256
                configure(&$0)
            }) { h in
                // The first agent waits for the template VM to boot and be saved (seconds under emulation).
                try await eventually("a VM agent in the warm pool", timeout: .seconds(150)) {
                    (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 1
                }
                return try await body(h)
            }
        }

        func lines(_ logs: MessageRecorder) -> [String] {
            logs.messages.compactMap { try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)).text }
        }

        /// Each workload below gets a VM of its own: a function with host services, a service that reaches its
        /// server through the VM's channel, the node's scenario-3 steps, the probes, and the memory and
        /// process limits.
        @Test func workloadsRunInVMsRestoredFromTheSnapshot() async throws {
            let escape = try await NexSandboxTests.escapeProgram()
            try await withVMNode { h in
                let ping = try await h.nex.ping(node: h.node.nodeID)
                #expect(ping.tags["nex.sandbox"] == "vm" && ping.tags["nex.unsafe"] == nil)
                let deployTimeout = Duration.seconds(60)

                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                _ = try await h.deploy(file: examples + "/kv.js", name: "vmkv", type: "v8", triggers: ["vm.kv"])
                let reply = try await h.client.request("inside", to: "vm.kv", timeout: .seconds(20))
                #expect(reply.string == #"{"keys":["hello2"],"hello2":"inside"}"#, "\(reply.string)")

                let echoLogs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.natsecho.*")
                _ = try await h.deploy(
                    file: escape, name: "natsecho", environment: ["nats_url": h.server.url],
                    argv: ["natsecho", "vm.echo"])
                let echoed = try await eventuallyValue("the service in the VM answers", timeout: deployTimeout) {
                    try? await h.client.request("out of the VM", to: "vm.echo", timeout: .seconds(2))
                }
                #expect(echoed.string == "out of the VM")
                try await eventually("the service says where it connected", timeout: deployTimeout) {
                    lines(echoLogs).contains { $0.hasPrefix("NATS connected to \(VMChannel.host):") }
                }

                let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.once.*")
                let once = try await h.deploy(
                    file: escape, name: "once", environment: ["greeting": "bonjour"],
                    argv: ["do", "out", "hello", "err", "oops", "env", "GREETING", "exit", "3"])
                try await eventually("it exited with 3", timeout: deployTimeout) {
                    h.workloadEvents("workload_undeployed").contains { $0.workloadID == once.id && $0.code == 3 }
                }
                let entries = logs.messages.compactMap {
                    try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload))
                }
                #expect(entries.contains { $0.text == "hello" && $0.level == LogEntry.info })
                #expect(entries.contains { $0.text == "oops" && $0.level == LogEntry.error })
                #expect(entries.contains { $0.text == "GREETING=bonjour" })

                let probeLogs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.probe.*")
                // "Another host" is one this test makes (a network namespace), never a real address.
                try #require(TestEnvironment.shouldRun(needing: TestNetworkHost.available), "needs root and iproute2")
                let probe = try await TestNetworkHost.with(port: h.server.port) { other in
                    #expect(other.isReachable(), "the test host answers from outside the sandbox")
                    let probe = try await h.deploy(
                        file: escape, name: "probe",
                        argv: ["probes", String(getpid()), String(h.server.port), other.address])
                    try await eventually("the probes ran", timeout: deployTimeout) { lines(probeLogs).contains("DONE") }
                    return probe
                }
                let output = lines(probeLogs)
                let probes = output.filter { $0.hasPrefix("PROBE ") }
                #expect(probes.count == 10, "\(output)")
                #expect(probes.allSatisfy { $0.contains(" blocked ") }, "\(probes.filter { $0.contains("ESCAPED") })")
                #expect(output.contains("TMP writable") && output.contains("UID 1000"), "\(output)")
                let processes = try #require(output.first { $0.hasPrefix("PROCESSES ") })
                #expect(!processes.contains("nats-server") && !processes.contains("swiftpm"), "\(processes)")
                _ = try await h.nex.stop(workloadID: probe.id, node: h.node.nodeID, issuer: h.issuer)

                let limitLogs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.*.*")
                let hog = try await h.deploy(file: escape, name: "hog", argv: ["memory", "1024"])
                try await eventually("the memory hog is killed", timeout: deployTimeout) {
                    h.workloadEvents("workload_undeployed").contains { $0.workloadID == hog.id && $0.code == 137 }
                }
                #expect(!lines(limitLogs).contains { $0.contains("MEMORY ESCAPED") })
                _ = try await h.deploy(file: escape, name: "bomb", argv: ["forkbomb"])
                try await eventually("the fork bomb is stopped", timeout: deployTimeout) {
                    lines(limitLogs).contains { $0.hasPrefix("FORK ") }
                }
                let fork = try #require(lines(limitLogs).first { $0.hasPrefix("FORK ") })
                let made = Int(fork.split(separator: " ")[3].dropLast()) ?? .max
                #expect(fork.hasPrefix("FORK refused after") && made < 256, "\(fork)")
                #expect(try await h.nex.ping(node: h.node.nodeID).nodeID == h.node.nodeID)
            }
        }

        /// A container image from a real registry runs in a VM of its own, booted with an ext4 copy of the image's
        /// root as its `/`: the image's entrypoint, env, user and working directory (given a tmpfs), its files owned
        /// by its user (as the namespace sandbox shows them) yet read-only, and its `/etc/ld.so.preload` hidden. An
        /// image without a User runs as root without capabilities.
        @Test func anImageRunsInAVMBootedWithItsRoot() async throws {
            try #require(
                TestEnvironment.shouldRun(needing: OCIRegistry.binary != nil && OCIImageLayout.toolsAvailable),
                "docker-registry, umoci or skopeo missing: scripts/setup.sh")
            let work = NSTemporaryDirectory() + "nex-vm-image-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: work) }
            let layout = try await OCIImageLayout.busybox(
                in: work,
                files: [
                    "etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:4242:4243::/srv:/bin/sh\n",
                    "etc/ld.so.preload": "/lib/nothing-here.so\n",
                ],
                entrypoint: ["/bin/sh", "-c"],
                cmd: [
                    "echo \"$GREETING uid=$(id -u) gid=$(id -g) cwd=$(pwd)\"; echo written > note && cat note; "
                        + "touch /etc/changed 2>/dev/null || echo root read-only; echo owner=$(stat -c %u /etc/passwd); "
                        + "echo preload=$(wc -c < /etc/ld.so.preload); exec sleep 600"
                ],
                env: ["GREETING=hi"], user: "app", workingDirectory: "/srv")
            let rootImage = try await OCIImageLayout.busybox(
                in: work + "/root", entrypoint: ["/bin/sh", "-c"],
                cmd: [
                    "echo uid=$(id -u); grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; "
                        + "echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>/dev/null || echo sysctl read-only; "
                        + "exec sleep 600"
                ])
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "demo/vm", tag: "1")
                try await rootImage.push("base", to: registry, as: "demo/root", tag: "1")
                let digest = try layout.digest(of: "base")
                try await withVMNode({ $0.ociRegistries = [registry.address: .init(insecure: true)] }) { h in
                    func deploy(_ name: String, _ repository: String, _ digest: String) async throws {
                        let request = try NexControlClient.makeDeployRequest(
                            name: name, type: "native",
                            location: try #require(
                                WorkloadLocation(url: "oci://\(registry.address)/\(repository)@\(digest)")),
                            hash: digest, environment: ["GREETING": "hey"], issuer: h.issuer, publisher: h.publisher,
                            targetNode: h.node.nodeID, targetXkey: h.node.xkey.publicKey)
                        _ = try await h.nex.deploy(request, to: h.node.nodeID)
                    }
                    let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.vmimage.*")
                    try await deploy("vmimage", "demo/vm", digest)
                    try await eventually("the image's service printed what it found", timeout: .seconds(120)) {
                        let output = lines(logs)
                        return [
                            "hey uid=4242 gid=4243 cwd=/srv", "written", "root read-only", "owner=4242", "preload=0",
                        ].allSatisfy(output.contains)
                    }
                    let rootLogs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.vmroot.*")
                    try await deploy("vmroot", "demo/root", try rootImage.digest(of: "base"))
                    try await eventually("the root image's service printed its capabilities", timeout: .seconds(120)) {
                        let output = lines(rootLogs)
                        return [
                            "uid=0", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1",
                            "sysctl read-only",
                        ].allSatisfy(output.contains)
                    }
                }
            }
        }
    }
}
