// Deploy benchmark of a Nex node with warm agents, without a sandbox, in the namespace sandbox and in the vm
// sandbox (QEMU microVMs restored from a snapshot), side by side in one run with the same static artifacts:
//  - deploy → accepted latency of a warm-pool deploy (small static program),
//  - deploy → first answer of the static Swift echo service (request sent until it answers), beside the same
//    service started by hand without a node (its own start-up and connect: what no node can take away),
//  - warm-pool refill: from a deploy taking an agent to the pool being full again (spawn → handshake),
//  - memory of an idle sandbox (a warm agent) and idle workloads per GiB (proportional set size of
//    everything the sandbox runs; for a VM, the QEMU process).
// The vm driver's kernel and root filesystem come from $NEX_HOME/vm (fetched and built on first use).
// Usage: nex-bench AGENT ECHO IDLE [ROUNDS]. Run through scripts/bench-nex.sh. NEX_BENCH_VM=0 leaves the vm
// column out (its first run builds a kernel and root filesystem).
import BenchSupport
import Foundation
import NexNode
import NexProcess

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: nex-bench AGENT ECHO IDLE [ROUNDS]")
    exit(2)
}
let (agent, echoFile, idleFile) = (args[1], args[2], args[3])
let rounds = args.count > 4 ? Int(args[4]) ?? 30 : 30
let poolSize = 2

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

func pss(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
        return Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }
    return 0
}

/// Children of every thread of `pid` (a child belongs to the thread that forked it).
func children(of pid: Int32) -> [Int32] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
    return tasks.flatMap { task in
        let list = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
        return list.split(separator: " ").compactMap { Int32($0) }
    }
}

func tree(_ pid: Int32) -> [Int32] { [pid] + children(of: pid).flatMap(tree) }

func comm(_ pid: Int32) -> String {
    ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .newlines)
}

/// Each agent's whole tree (bubblewrap, the agent, the workload; or the VM).
func sandboxes() -> [[Int32]] {
    children(of: getpid()).filter { ["nex-agent", "bwrap", "qemu-system-x86"].contains(comm($0)) }.map(tree)
}

func meanPSS(_ trees: [[Int32]]) -> Double {
    trees.map { $0.map(pss).reduce(0, +) }.reduce(0, +) / Double(max(trees.count, 1))
}

/// Mean PSS (kB) of the sandboxes that run a workload (a VM's inside cannot be seen: all VMs but the warm pool's
/// count, as they are the most).
func busySandboxPSS() -> Double {
    let all = sandboxes()
    let busy = all.filter { $0.contains { comm($0) == "workload" } }
    return meanPSS(busy.isEmpty ? all : busy)
}

struct Results {
    var accepted: [Double] = []
    var refill: [Double] = []
    var acceptedEcho: [Double] = []
    var firstAnswer: [Double] = []
    var alone: [Double] = []
    var idleKB = 0.0
    var echoKB: [Double] = []
    var warmKB = 0.0
    var firstPool = 0.0
}

func measure(driver: String, rounds: Int) async throws -> Results {
    let started = ContinuousClock.now
    let bench = try await BenchNode.start(name: "nex-bench", agent: agent) {
        $0.machinePoolSize = poolSize
        $0.allowDuplicateWorkloads = true
        $0.noSandbox = driver == "none"
        $0.sandbox = NodeConfiguration.SandboxKind(rawValue: driver) ?? .auto
        $0.machineTemplate.memsizeMib = 256
    }
    let nex = bench.nex
    let nodeID = bench.node.nodeID
    func warmAgents() async throws -> Int { try await nex.info(node: nodeID).availableAgents }
    func waitForWarmPool() async throws {
        while try await warmAgents() < poolSize { try await Task.sleep(for: .milliseconds(2)) }
    }
    var r = Results()
    try await waitForWarmPool()
    r.firstPool = millis(ContinuousClock.now - started)
    try await Task.sleep(for: .seconds(1))
    r.warmKB = meanPSS(sandboxes())

    // Deploy → accepted (a small static program that waits), and the pool's refill after each.
    let idle = try await bench.upload(idleFile, key: "idle")
    var ids: [String] = []
    for _ in 0..<rounds {
        try await waitForWarmPool()
        let start = ContinuousClock.now
        let run = try await bench.deploy(idle, name: "idle", type: "native")
        let accepted = ContinuousClock.now
        r.accepted.append(millis(accepted - start))
        try await waitForWarmPool()
        r.refill.append(millis(ContinuousClock.now - accepted))
        ids.append(run.id)
    }
    r.idleKB = busySandboxPSS()
    for id in ids { _ = try? await nex.stop(workloadID: id, node: nodeID, issuer: bench.issuer) }

    func awaitFirstAnswer() async throws {
        while true {
            if (try? await bench.client.request("ping", to: "svc.echo", timeout: .milliseconds(200))) != nil { break }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
    // The echo service started by hand, no node: the floor under deploy → first answer.
    if driver == "none" {
        for _ in 0..<max(rounds / 3, 5) {
            let start = ContinuousClock.now
            let alone = try await ChildProcess.spawn(executable: echoFile, environment: ["NATS_URL": bench.server.url])
            try await awaitFirstAnswer()
            r.alone.append(millis(ContinuousClock.now - start))
            _ = await alone.terminate(grace: .seconds(2))
        }
    }

    // Deploy → first answer of the echo service.
    let echo = try await bench.upload(echoFile, key: "echo")
    for _ in 0..<max(rounds / 3, 5) {
        try await waitForWarmPool()
        let start = ContinuousClock.now
        let run = try await bench.deploy(
            echo, name: "echo", type: "native", environment: ["NATS_URL": bench.server.url])
        r.acceptedEcho.append(millis(ContinuousClock.now - start))
        try await awaitFirstAnswer()
        r.firstAnswer.append(millis(ContinuousClock.now - start))
        r.echoKB.append(busySandboxPSS())
        _ = try await nex.stop(workloadID: run.id, node: nodeID, issuer: bench.issuer)
    }
    await bench.stop()
    return r
}

let none = try await measure(driver: "none", rounds: rounds)
let namespace = try await measure(driver: "namespace", rounds: rounds)
// VMs are few per machine (each an emulated computer): fewer rounds.
let vmRounds = max(rounds / 3, 5)
let vm =
    ProcessInfo.processInfo.environment["NEX_BENCH_VM"] == "0"
    ? Results() : try await measure(driver: "vm", rounds: vmRounds)
let echoSize = (try? FileManager.default.attributesOfItem(atPath: echoFile)[.size] as? Int) ?? 0

print(
    "Nex node deploy benchmark (warm pool of \(poolSize), \(rounds) rounds, \(vmRounds) for vm; p50, p90 in brackets)")
print("  metric                                    no sandbox           namespace (added)           vm")
func row(_ name: String, _ results: [[Double]], unit: String = "ms") {
    let p50 = results.map { percentile($0, 0.5) }
    let cells = results.enumerated().map { index, values in
        String(format: "%7.1f (%7.1f)", p50[index], percentile(values, 0.9))
            + (index == 1 ? String(format: " %+6.1f", p50[1] - p50[0]) : "")
    }
    let label = name.padding(toLength: 40, withPad: " ", startingAt: 0)
    print("  " + label + " " + cells.joined(separator: "  ") + " " + unit)
}
row("deploy → accepted, static program", [none.accepted, namespace.accepted, vm.accepted])
row(
    String(format: "deploy → accepted, %.0f MB echo service", Double(echoSize) / 1e6),
    [none.acceptedEcho, namespace.acceptedEcho, vm.acceptedEcho])
row("deploy → first answer (svc.echo)", [none.firstAnswer, namespace.firstAnswer, vm.firstAnswer])
print(
    String(
        format: "  the echo service alone, no node: start → first answer %.1f ms (p50; its own start and connect)",
        percentile(none.alone, 0.5)))
row("warm-pool refill (spawn → handshake)", [none.refill, namespace.refill, vm.refill])
print(
    String(
        format: "  node start → warm pool full:             %.0f ms / %.0f ms / %.0f ms (vm: boot + save the template)",
        none.firstPool, namespace.firstPool, vm.firstPool))
func memory(_ name: String, _ kB: [Double]) {
    let cells = kB.map { String(format: "%6.1f MiB (%4.0f/GiB)", $0 / 1024, 1024 * 1024 / max($0, 1)) }
    print("  " + name.padding(toLength: 40, withPad: " ", startingAt: 0) + " " + cells.joined(separator: "  "))
}
memory("idle sandbox (warm agent), PSS", [none.warmKB, namespace.warmKB, vm.warmKB])
memory("idle program, PSS per workload", [none.idleKB, namespace.idleKB, vm.idleKB])
memory(
    "echo service, PSS per workload",
    [percentile(none.echoKB, 0.5), percentile(namespace.echoKB, 0.5), percentile(vm.echoKB, 0.5)])
print(
    "  targets: warm deploy accepted ≤ 50 ms, first answer ≤ 150 ms; the namespace sandbox adds ≤ 20 ms; "
        + "vm restore from snapshot ≤ 1 s (the refill)")
