import Foundation
import NATSTestSupport
import NexProcess
import Testing

@testable import NexSandbox

/// The image `nex rootfs` builds, booted for real: Debian's cloud kernel and a first-stage initramfs in a
/// QEMU microvm (software emulation here). The VM runs the image's setup script and nex-agent, then powers
/// off. This is the base of the `vm` driver (`NexVMSandboxTests`).
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct MicroVMTests {
        @Test func theRootfsImageBootsAndRunsTheAgent() async throws {
            let qemu = MicroVM.findQEMU()
            try #require(
                TestEnvironment.shouldRun(needing: qemu != nil), "qemu-system-x86 missing: run scripts/setup.sh")
            let kernel = try await MicroVM.prepareKernel(
                in: TestEnvironment.packageRoot.appendingPathComponent(".build/vm-kernel").path)
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-vm-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let setup = dir + "/setup.sh"
            try "#!/bin/busybox sh\necho \"setup in the VM, agent $NEX_AGENT_ID\"\n".write(
                toFile: setup, atomically: true, encoding: .utf8)
            let image = dir + "/rootfs.ext4"
            let builder = RootfsBuilder(agent: TestEnvironment.builtProduct("nex-agent"), script: setup)
            _ = try await builder.build(to: image)

            let started = ContinuousClock.now
            let vm = try await PeerProcess.start(
                qemu ?? "",
                MicroVM.arguments(
                    kernel: kernel, rootfs: image, memoryMiB: 512, cpus: 1, append: "nex.env.NEX_AGENT_ID=boottest",
                    netdev: "user,id=n0,restrict=on"))
            let status = try await vm.waitForExit(timeout: .seconds(150))
            let lines = vm.output
            #expect(status == 0, "\(lines.suffix(20))")
            #expect(lines.contains { $0.contains("setup in the VM, agent boottest") }, "\(lines.suffix(20))")
            // The agent ran inside (its libraries are in the image) and stopped: no node gave it a server.
            #expect(lines.contains { $0.contains("nex-agent: no link to the node") }, "\(lines.suffix(20))")
            print("microvm cold boot to agent exit: \(ContinuousClock.now - started)")
        }
    }
}
