// Deploy benchmark of a Nex node with warm agents (no sandbox):
//  - deploy → accepted latency of a warm-pool deploy (small artifact),
//  - deploy → first answer of a Swift echo service (request sent until it answers),
//  - idle workloads per GiB (proportional set size of each agent plus its service).
// Usage: nex-bench AGENT ECHO [ROUNDS]. Run through scripts/bench-nex.sh.
import BenchSupport
import Foundation

let args = CommandLine.arguments
guard args.count >= 3 else {
    print("usage: nex-bench AGENT ECHO [ROUNDS]")
    exit(2)
}
let rounds = args.count > 3 ? Int(args[3]) ?? 30 : 30
let poolSize = 2
let bench = try await BenchNode.start(name: "nex-bench", agent: args[1]) {
    $0.machinePoolSize = poolSize
    $0.allowDuplicateWorkloads = true
}
let nex = bench.nex
let nodeID = bench.node.nodeID

func waitForWarmPool() async throws {
    while try await nex.info(node: nodeID).availableAgents < poolSize {
        try await Task.sleep(for: .milliseconds(5))
    }
}

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

// 1. Deploy → accepted, warm pool, a small artifact.
let script = bench.work + "/idle.sh"
try "#!/bin/sh\nexec sleep 3600\n".write(toFile: script, atomically: true, encoding: .utf8)
let idle = try await bench.upload(script, key: "idle")
var accepted: [Double] = []
var ids: [String] = []
for _ in 0..<rounds {
    try await waitForWarmPool()
    let start = ContinuousClock.now
    let run = try await bench.deploy(idle, name: "idle", type: "native")
    accepted.append(millis(ContinuousClock.now - start))
    ids.append(run.id)
}

// 3. Idle workloads per GiB: PSS of each busy agent plus its children.
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
/// Mean PSS (kB) of an agent that runs a workload, with its workload.
func busyAgentPSS() -> Double {
    let agents = children(of: getpid()).filter {
        (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("nex-agent") == true
    }
    let busy = agents.filter { !children(of: $0).isEmpty }
    return busy.map { a in pss(a) + children(of: a).map(pss).reduce(0, +) }.reduce(0, +) / Double(max(busy.count, 1))
}
let kBPerWorkload = busyAgentPSS()
for id in ids { _ = try? await nex.stop(workloadID: id, node: nodeID, issuer: bench.issuer) }

// 2. Deploy → first answer of the echo service.
let echo = try await bench.upload(args[2], key: "echo")
var firstAnswer: [Double] = []
var acceptedEcho: [Double] = []
var echoPSS: [Double] = []
for _ in 0..<max(rounds / 3, 5) {
    try await waitForWarmPool()
    let start = ContinuousClock.now
    let run = try await bench.deploy(
        echo, name: "echo", type: "native", environment: ["NATS_URL": bench.server.url])
    acceptedEcho.append(millis(ContinuousClock.now - start))
    while true {
        if (try? await bench.client.request("ping", to: "svc.echo", timeout: .milliseconds(200))) != nil { break }
        try await Task.sleep(for: .milliseconds(1))
    }
    firstAnswer.append(millis(ContinuousClock.now - start))
    echoPSS.append(busyAgentPSS())
    _ = try await nex.stop(workloadID: run.id, node: nodeID, issuer: bench.issuer)
}
let echoSize = (try? FileManager.default.attributesOfItem(atPath: args[2])[.size] as? Int) ?? 0

print("Nex node deploy benchmark (no sandbox, warm pool of \(poolSize), \(rounds) rounds)")
print(
    String(
        format: "  deploy → accepted, %d B script      p50 %7.1f ms   p90 %7.1f ms   (target ≤ 50 ms)", 33,
        percentile(accepted, 0.5), percentile(accepted, 0.9)))
print(
    String(
        format: "  deploy → accepted, %.1f MB service  p50 %7.1f ms   p90 %7.1f ms   (first, with download: %.1f ms)",
        Double(echoSize) / 1e6, percentile(acceptedEcho, 0.5), percentile(acceptedEcho, 0.9), acceptedEcho[0]))
print(
    String(
        format:
            "  deploy → first answer (svc.echo)    p50 %7.1f ms   p90 %7.1f ms   (first, with download: %.1f ms; target ≤ 150 ms)",
        percentile(firstAnswer, 0.5), percentile(firstAnswer, 0.9), firstAnswer[0]))
print(
    String(
        format: "  idle workload: agent + sleep        %.1f MiB PSS → %.0f per GiB", kBPerWorkload / 1024,
        1024 * 1024 / max(kBPerWorkload, 1)))
let echoKB = percentile(echoPSS, 0.5)
print(
    String(
        format: "  idle workload: agent + echo service %.1f MiB PSS → %.0f per GiB", echoKB / 1024,
        1024 * 1024 / max(echoKB, 1)))
await bench.stop()
