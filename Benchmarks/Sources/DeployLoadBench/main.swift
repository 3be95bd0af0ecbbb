// Does a big deploy stall the node? A JavaScript echo function's round trips, idle and while a 64 MiB native
// artifact deploys (download from the object store, hash, write, start), side by side in one run; and the
// node's PING answered while the deploy is in flight.
// Usage: deploy-load-bench AGENT ECHOSERVICE [ROUNDS]. Run through scripts/bench-deploy-load.sh.
import BenchSupport
import Foundation
import NATS
import NexModels
import Synchronization

let args = CommandLine.arguments
guard args.count >= 3 else {
    print("usage: deploy-load-bench AGENT ECHOSERVICE [ROUNDS]")
    exit(2)
}
let rounds = args.count > 3 ? Int(args[3]) ?? 5 : 5
let artifactMiB = 64
let bench = try await BenchNode.start(name: "deploy-load-bench", agent: args[1]) {
    $0.workloadTypes = [.v8, .native]
    $0.machinePoolSize = 2
}
let requester = NATSClient(configuration: .init(servers: [bench.server.url]))
try await requester.connect()

let echo = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-load-echo.js").path
try "(subject, payload) => payload;\n".write(toFile: echo, atomically: true, encoding: .utf8)
_ = try await bench.deploy(try await bench.upload(echo, key: "jsecho"), name: "jsecho", type: "v8", triggers: ["dl.js"])

// The echo service padded to 64 MiB: still the same executable (the bytes after it are never read). Each round
// pads with another byte, so every deploy downloads (the node keeps verified artifacts by hash).
var artifacts: [BenchNode.Artifact] = []
for index in 0..<rounds {
    let big = FileManager.default.temporaryDirectory.appendingPathComponent("deploy-load-big\(index)").path
    var bytes = try Data(contentsOf: URL(fileURLWithPath: args[2]))
    bytes.append(Data(repeating: UInt8(index + 1), count: max(0, artifactMiB << 20 - bytes.count)))
    try bytes.write(to: URL(fileURLWithPath: big))
    artifacts.append(try await bench.upload(big, key: "big\(index)"))
    try FileManager.default.removeItem(atPath: big)
}

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1e3 + Double(d.components.attoseconds) / 1e15 }

func roundTrip() async throws -> Double {
    let start = ContinuousClock.now
    _ = try await requester.request(Array("hello".utf8), to: "dl.js", timeout: .seconds(10))
    return millis(ContinuousClock.now - start)
}

for _ in 0..<300 { _ = try await roundTrip() }
var idle: [Double] = []
for _ in 0..<2000 { idle.append(try await roundTrip()) }

var loaded: [Double] = []
var worstPerRound: [Double] = []
var deployTimes: [Double] = []
var pingTimes: [Double] = []
/// What one deploy round measures, written by its concurrent tasks.
final class Round: Sendable {
    let deploying = Atomic<Bool>(true)
    let samples = Mutex<[Double]>([])
    let deployMillis = Mutex<Double>(0)
    let pingMillis = Mutex<Double>(0)
}

for index in 0..<rounds {
    let round = Round()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            let start = ContinuousClock.now
            let response = try await bench.deploy(artifacts[index], name: "big\(index)", type: "native")
            round.deployMillis.withLock { $0 = millis(ContinuousClock.now - start) }
            round.deploying.store(false, ordering: .relaxed)
            _ = try await bench.nex.stop(workloadID: response.id, node: bench.node.nodeID, issuer: bench.issuer)
        }
        group.addTask {
            // A PING sent once the deploy is under way: answered beside it, not after it.
            try await Task.sleep(for: .milliseconds(50))
            let start = ContinuousClock.now
            _ = try await bench.nex.ping(node: bench.node.nodeID)
            round.pingMillis.withLock { $0 = millis(ContinuousClock.now - start) }
        }
        group.addTask {
            while round.deploying.load(ordering: .relaxed) {
                let sample = try await roundTrip()
                round.samples.withLock { $0.append(sample) }
            }
        }
        try await group.waitForAll()
    }
    let samples = round.samples.withLock { $0 }
    loaded += samples
    worstPerRound.append(samples.max() ?? 0)
    deployTimes.append(round.deployMillis.withLock { $0 })
    pingTimes.append(round.pingMillis.withLock { $0 })
}

print(
    "JavaScript echo round trips while a \(artifactMiB) MiB native artifact deploys (release; no sandbox; \(rounds) deploys)"
)
print("                              p50 ms    p99 ms    max ms   samples")
for (name, values) in [("idle", idle), ("during the deploys", loaded)] {
    print(
        String(
            format: "  %@ %8.2f  %8.2f  %8.2f  %8d", name.padding(toLength: 24, withPad: " ", startingAt: 0),
            percentile(values, 0.5),
            percentile(values, 0.99), values.max() ?? 0, values.count))
}
print(
    String(
        format: "  worst round trip per deploy: median %.2f ms, max %.2f ms (target ≤ 20 ms; idle max %.2f ms)",
        percentile(worstPerRound, 0.5), worstPerRound.max() ?? 0, idle.max() ?? 0))
print(
    String(
        format: "  deploy of \(artifactMiB) MiB, request to accepted: median %.0f ms; PING during it: median %.1f ms",
        percentile(deployTimes, 0.5), percentile(pingTimes, 0.5)))
await requester.close()
await bench.stop()
