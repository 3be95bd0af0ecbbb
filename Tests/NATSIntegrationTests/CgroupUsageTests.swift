import Foundation
import NexSandbox
import Testing

/// Sandbox usage for the metrics, read from a cgroup tree laid out as the kernel does (in a temporary
/// directory, so no privileges are needed): v2's `memory.current` and `cpu.stat`, v1's
/// `memory.usage_in_bytes` and `cpuacct.usage` (cpuacct mounted apart from cpu).
@Suite struct CgroupUsageTests {
    func tree(_ files: [String: String]) throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroups-\(UUID().uuidString)").path
        for (path, content) in files {
            let full = root + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return root
    }

    @Test func version2() throws {
        let root = try tree([
            "cgroup.controllers": "cpuset cpu io memory pids\n",
            "node/nex/agent1/memory.current": "7340032\n",
            "node/nex/agent1/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = try #require(Cgroups.detect(root: root, selfCgroup: "0::/node\n"))
        #expect(cgroups.version == .v2)
        #expect(cgroups.usage("agent1") == SandboxUsage(memoryBytes: 7_340_032, cpuSeconds: 2.5))
        #expect(cgroups.usage("gone") == nil)
    }

    @Test func version1WithCpuacctApart() throws {
        let root = try tree([
            "memory/cgroup.procs": "", "cpu/cgroup.procs": "", "pids/cgroup.procs": "", "cpuacct/cgroup.procs": "",
            "memory/nex/agent1/memory.usage_in_bytes": "1048576\n",
            "cpuacct/nex/agent1/cpuacct.usage": "1500000000\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cgroups = try #require(Cgroups.detect(root: root, selfCgroup: "4:memory:/\n2:cpuacct:/\n1:cpu:/\n"))
        #expect(cgroups.version == .v1)
        #expect(cgroups.usage("agent1") == SandboxUsage(memoryBytes: 1_048_576, cpuSeconds: 1.5))
    }
}
