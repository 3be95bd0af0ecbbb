// Deploy benchmark of a Nex node with warm agents, without a sandbox and in the namespace sandbox, side by side
// in one run with the same static artifacts:
//  - deploy → accepted latency of a warm-pool deploy (small static program),
//  - deploy → first answer of the static Swift echo service (request sent until it answers),
//  - warm-pool refill: from a deploy taking an agent to the pool being full again (spawn → handshake),
//  - idle workloads per GiB (proportional set size of everything the sandbox runs).
// Usage: nex-bench AGENT ECHO IDLE [ROUNDS]. Run through scripts/bench-nex.sh.
import BenchSupport
import Foundation
import NexNode

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

/// Mean PSS (kB) of each agent's whole tree (bubblewrap, the agent, the workload) that runs a workload.
func busySandboxPSS() -> Double {
    let sandboxes = children(of: getpid()).filter { ["nex-agent", "bwrap"].contains(comm($0)) }
    let busy = sandboxes.map(tree).filter { $0.contains { comm($0) == "workload" } }
    return busy.map { $0.map(pss).reduce(0, +) }.reduce(0, +) / Double(max(busy.count, 1))
}

struct Results {
    var accepted: [Double] = []
    var refill: [Double] = []
    var acceptedEcho: [Double] = []
    var firstAnswer: [Double] = []
    var idleKB = 0.0
    var echoKB: [Double] = []
}

func measure(sandboxed: Bool) async throws -> Results {
    let bench = try await BenchNode.start(name: "nex-bench", agent: agent) {
        $0.machinePoolSize = poolSize
        $0.allowDuplicateWorkloads = true
        $0.noSandbox = !sandboxed
        $0.sandbox = "namespace"
    }
    let nex = bench.nex
    let nodeID = bench.node.nodeID
    func warmAgents() async throws -> Int { try await nex.info(node: nodeID).availableAgents }
    func waitForWarmPool() async throws {
        while try await warmAgents() < poolSize { try await Task.sleep(for: .milliseconds(2)) }
    }
    var r = Results()

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

    // Deploy → first answer of the echo service.
    let echo = try await bench.upload(echoFile, key: "echo")
    for _ in 0..<max(rounds / 3, 5) {
        try await waitForWarmPool()
        let start = ContinuousClock.now
        let run = try await bench.deploy(
            echo, name: "echo", type: "native", environment: ["NATS_URL": bench.server.url])
        r.acceptedEcho.append(millis(ContinuousClock.now - start))
        while true {
            if (try? await bench.client.request("ping", to: "svc.echo", timeout: .milliseconds(200))) != nil { break }
            try await Task.sleep(for: .milliseconds(1))
        }
        r.firstAnswer.append(millis(ContinuousClock.now - start))
        r.echoKB.append(busySandboxPSS())
        _ = try await nex.stop(workloadID: run.id, node: nodeID, issuer: bench.issuer)
    }
    await bench.stop()
    return r
}

let none = try await measure(sandboxed: false)
let namespace = try await measure(sandboxed: true)
let echoSize = (try? FileManager.default.attributesOfItem(atPath: echoFile)[.size] as? Int) ?? 0

print("Nex node deploy benchmark (warm pool of \(poolSize), \(rounds) rounds; p50, p90 in brackets)")
print("  metric                                      no sandbox             namespace sandbox      added")
func row(_ name: String, _ a: [Double], _ b: [Double], unit: String = "ms") {
    let (pa, pb) = (percentile(a, 0.5), percentile(b, 0.5))
    print(
        String(
            format: "  %-42@ %7.1f (%7.1f) %@  %7.1f (%7.1f) %@  %+7.1f %@", name as NSString, pa, percentile(a, 0.9),
            unit as NSString, pb, percentile(b, 0.9), unit as NSString, pb - pa, unit as NSString))
}
row("deploy → accepted, static program", none.accepted, namespace.accepted)
row(
    String(format: "deploy → accepted, %.0f MB echo service", Double(echoSize) / 1e6), none.acceptedEcho,
    namespace.acceptedEcho)
row("deploy → first answer (svc.echo)", none.firstAnswer, namespace.firstAnswer)
row("warm-pool refill (spawn → handshake)", none.refill, namespace.refill)
print(
    String(
        format: "  first echo deploy, with download + SHA-256: %.1f ms / %.1f ms", none.firstAnswer[0],
        namespace.firstAnswer[0]))
print(
    String(
        format: "  idle program, PSS per workload:            %.1f MiB (%.0f per GiB)   %.1f MiB (%.0f per GiB)",
        none.idleKB / 1024, 1024 * 1024 / max(none.idleKB, 1), namespace.idleKB / 1024,
        1024 * 1024 / max(namespace.idleKB, 1)))
let (echoNone, echoBox) = (percentile(none.echoKB, 0.5), percentile(namespace.echoKB, 0.5))
print(
    String(
        format: "  echo service, PSS per workload:            %.1f MiB (%.0f per GiB)   %.1f MiB (%.0f per GiB)",
        echoNone / 1024, 1024 * 1024 / max(echoNone, 1), echoBox / 1024, 1024 * 1024 / max(echoBox, 1)))
print("  targets: warm deploy accepted ≤ 50 ms, first answer ≤ 150 ms; the namespace sandbox adds ≤ 20 ms")
