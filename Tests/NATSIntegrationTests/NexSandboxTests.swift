import Foundation
import NATS
import NATSTestSupport
import NexControlClient
import NexModels
import NexSandbox
import Testing

@testable import NexNode

/// Acceptance scenario 12 under the `namespace` driver: real bubblewrap sandboxes around real agents, with
/// a static probe program (Tests/Peers/c/escape.c) trying the ways out.
@Suite(.timeLimit(.minutes(2))) struct NexSandboxTests {
    static var available: Bool { NamespaceDriver.findBubblewrap() != nil && Cgroups.detect() != nil }

    /// The probe program, built static once (`cc -static`) into `.build/peers`.
    static func escapeProgram() async throws -> String {
        let source = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/c/escape.c").path
        let binary = TestEnvironment.packageRoot.appendingPathComponent(".build/peers/escape").path
        let fm = FileManager.default
        if let built = try? fm.attributesOfItem(atPath: binary)[.modificationDate] as? Date,
            let changed = try? fm.attributesOfItem(atPath: source)[.modificationDate] as? Date, built > changed
        {
            return binary
        }
        try fm.createDirectory(
            atPath: (binary as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let temporary = binary + ".\(UUID().uuidString)"
        try await TestEnvironment.run("/usr/bin/cc", ["-static", "-O2", "-o", temporary, source])
        _ = rename(temporary, binary)
        return binary
    }

    func withSandboxedNode<T>(
        memoryMiB: Int = 256, _ configure: (inout NodeConfiguration) -> Void = { _ in },
        _ body: (NexWorkloadTests.Harness) async throws -> T
    ) async throws -> T {
        try #require(TestEnvironment.shouldRun(needing: Self.available), "bubblewrap or cgroups missing")
        return try await NexWorkloadTests().withNode({
            $0.noSandbox = false
            $0.sandbox = .namespace
            $0.workloadTypes = [.native, .v8, .wasm]
            $0.machineTemplate.memsizeMib = memoryMiB
            $0.restartBackoffInitialMs = 100
            $0.restartBackoffMaxMs = 400
            configure(&$0)
        }) { h in try await body(h) }
    }

    /// The node's own scenarios with the workload sandboxed (the probe program's `do` steps stand in for the
    /// shell scripts the unsandboxed suite deploys): output to logs at 0 and 8 with the exit code in the
    /// event and the environment delivered (scenario 3), essential restarts with new ids (11), info and a
    /// stop by the issuer (2, 9).
    @Test func theNodeScenariosRunSandboxed() async throws {
        let program = try await Self.escapeProgram()
        try await withSandboxedNode { h in
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.*.*")
            let once = try await h.deploy(
                file: program, name: "once", environment: ["greeting": "bonjour"],
                argv: ["do", "out", "hello", "err", "oops", "env", "GREETING", "exit", "3"])
            try await eventually("it exited with 3") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == once.id && $0.code == 3 }
            }
            let entries = logs.messages.compactMap { try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)) }
            #expect(entries.contains { $0.text == "hello" && $0.level == LogEntry.info })
            #expect(entries.contains { $0.text == "oops" && $0.level == LogEntry.error })
            #expect(entries.contains { $0.text == "GREETING=bonjour" })

            let first = try await h.deploy(
                file: program, name: "crasher", essential: true, argv: ["do", "out", "started", "exit", "3"])
            try await eventually("three restarts") {
                h.workloadEvents("workload_deployed").filter { $0.workloadName == "crasher" }.count >= 4
            }
            let ids = h.workloadEvents("workload_deployed").filter { $0.workloadName == "crasher" }.map(\.workloadID)
            #expect(ids.first == first.id && Set(ids).count == ids.count)
            _ = try await h.nex.lameDuck(node: h.node.nodeID)
        }
        try await withSandboxedNode { h in
            let sleeper = try await h.deploy(file: program, name: "sleeper", argv: ["do", "sleep", "60"])
            #expect(try await h.nex.info(node: h.node.nodeID).machines.map(\.workload.name) == ["sleeper"])
            let stopped = try await h.nex.stop(workloadID: sleeper.id, node: h.node.nodeID, issuer: h.issuer)
            #expect(stopped.stopped)
            try await eventually("the stop is an undeploy") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == sleeper.id }
            }
            #expect(try await h.nex.info(node: h.node.nodeID).machines.isEmpty)
        }
    }

    /// Lines a workload printed, from its log subject.
    func lines(_ logs: MessageRecorder) -> [String] {
        logs.messages.compactMap { try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)).text }
    }

    @Test func functionsRunSandboxedAndTheNodeSaysWhichDriver() async throws {
        try await withSandboxedNode { h in
            let ping = try await h.nex.ping(node: h.node.nodeID)
            #expect(ping.tags["nex.sandbox"] == "namespace" && ping.tags["nex.unsafe"] == nil)
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            _ = try await h.deploy(file: examples + "/kv.js", name: "boxedkv", type: "v8", triggers: ["box.kv"])
            let reply = try await h.client.request("inside", to: "box.kv", timeout: .seconds(10))
            #expect(reply.string == #"{"keys":["hello2"],"hello2":"inside"}"#, "\(reply.string)")
            let wasm = examples + "/wasm/echofunction.wasm"
            _ = try await h.deploy(file: wasm, name: "boxedwasm", type: "wasm", triggers: ["box.wasm"])
            #expect(try await h.client.request("hi", to: "box.wasm", timeout: .seconds(10)).string == "hibox.wasm")
        }
    }

    @Test func theProbesFindNoWayOut() async throws {
        let escape = try await Self.escapeProgram()
        try await withSandboxedNode { h in
            // Two workloads in two namespaces: each sees only its own processes.
            // "Another host" is one this test makes (a network namespace), never a real address.
            try #require(TestEnvironment.shouldRun(needing: TestNetworkHost.available), "needs root and iproute2")
            var outputs: [[String]] = []
            try await TestNetworkHost.with(port: h.server.port) { other in
                #expect(other.isReachable(), "the test host answers from outside the sandbox")
                for namespace in ["alpha", "beta"] {
                    let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.\(namespace).*.probe.*")
                    _ = try await h.deploy(
                        file: escape, name: "probe", namespace: namespace,
                        argv: ["probes", String(getpid()), String(h.server.port), other.address])
                    try await eventually("the probes ran in \(namespace)") { lines(logs).contains("DONE") }
                    outputs.append(lines(logs))
                }
            }
            for output in outputs {
                let probes = output.filter { $0.hasPrefix("PROBE ") }
                #expect(probes.count == 10, "\(output)")
                #expect(probes.allSatisfy { $0.contains(" blocked ") }, "\(probes.filter { $0.contains("ESCAPED") })")
                #expect(output.contains("TMP writable") && output.contains("UID 1000"), "\(output)")
                // bubblewrap's init, the agent and the probe (its name is the artifact's, `workload`).
                let processes = try #require(output.first { $0.hasPrefix("PROCESSES ") })
                #expect(processes.hasPrefix("PROCESSES 3 "), "\(processes)")
                #expect(!processes.contains("nats-server") && !processes.contains("swiftpm"))
            }
        }
    }

    /// A service reaches the NATS server it is given (forwarded into its sandbox), and nothing else: the probes
    /// run beside it still find every other way closed.
    @Test func servicesReachTheServerTheyAreGiven() async throws {
        let escape = try await Self.escapeProgram()
        try await withSandboxedNode { h in
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.natsecho.*")
            _ = try await h.deploy(
                file: escape, name: "natsecho", environment: ["nats_url": h.server.url], argv: ["natsecho", "box.echo"])
            let reply = try await eventuallyValue("the sandboxed service answers") {
                try? await h.client.request("through the wall", to: "box.echo", timeout: .seconds(1))
            }
            #expect(reply.string == "through the wall")
            // Logs travel apart from the reply: wait for the line rather than expect it already there.
            try await eventually("the service says where it connected") {
                lines(logs).contains { $0.hasPrefix("NATS connected to 127.0.0.1:\(h.server.port)") }
            }
        }
    }

    @Test func memoryAndProcessLimitsHold() async throws {
        let escape = try await Self.escapeProgram()
        try await withSandboxedNode(memoryMiB: 96) { h in
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.*.*")
            let hog = try await h.deploy(file: escape, name: "hog", argv: ["memory", "1024"])
            try await eventually("the memory hog is killed") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == hog.id && $0.code == 137 }
            }
            #expect(!lines(logs).contains { $0.contains("MEMORY ESCAPED") })
            _ = try await h.deploy(file: escape, name: "bomb", argv: ["forkbomb"])
            try await eventually("the fork bomb is stopped") { lines(logs).contains { $0.hasPrefix("FORK ") } }
            let fork = try #require(lines(logs).first { $0.hasPrefix("FORK ") })
            let made = Int(fork.split(separator: " ")[3].dropLast()) ?? .max
            #expect(fork.hasPrefix("FORK refused after") && made < NamespaceDriver.defaultPidsLimit, "\(fork)")
            // The node is healthy and still deploys.
            #expect(try await h.nex.ping(node: h.node.nodeID).nodeID == h.node.nodeID)
        }
    }

    @Test func onlyStaticExecutablesAreDeployed() async throws {
        try await withSandboxedNode { h in
            let dynamic = h.server.directory.appendingPathComponent("dynamic").path
            try FileManager.default.copyItem(atPath: "/bin/true", toPath: dynamic)
            await #expect(throws: (any Error).self) { try await h.deploy(file: dynamic, name: "dynamic") }
            do { _ = try await h.deploy(file: dynamic, name: "dynamic2") } catch {
                #expect("\(error)".contains("static executables only") && "\(error)".contains("dynamically linked"))
            }
            let script = try NexWorkloadTests().script("echo hi", in: h.server)
            do {
                _ = try await h.deploy(file: script, name: "script")
                Issue.record("a script was deployed into the sandbox")
            } catch {
                #expect("\(error)".contains("interpreter"), "\(error)")
            }
        }
    }
}
