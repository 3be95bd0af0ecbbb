// Restart and failover benchmark of `nex node up` processes on real nats-servers (no sandbox):
//  - node start → answering: a node with no workloads (→ PING answered) beside a node that re-adopts a native
//    service and a JavaScript function (→ both answer), after SIGTERM and after SIGKILL of its process group;
//  - the request gap when the server a node uses dies (three-server JetStream cluster, the requester on a
//    server that stays): from the last answer before the kill to the first after;
//  - the request gap when one of two nodes serving one function is SIGKILLed, and the requests that failed.
// Requests are sequential, each with a 100 ms timeout (the resolution of a gap that loses a request). Usage: failover-bench NEX ECHO FUNCTION.js [ROUNDS].
// Run through scripts/bench-failover.sh.
import Foundation
import NATS
import NATSTestSupport

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: failover-bench NEX ECHO FUNCTION.js [ROUNDS]")
    exit(2)
}
let (nex, echo, function) = (args[1], args[2], args[3])
let rounds = args.count > 4 ? Int(args[4]) ?? 10 : 10
let work = FileManager.default.temporaryDirectory.appendingPathComponent("failover-\(UUID().uuidString)").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
let config = work + "/node.json"
try #"{"no_sandbox": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
let developer: [String: String?] = ["NEX_HOME": work + "/developer"]

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
}

func describe(_ values: [Double]) -> String {
    String(
        format: "p50 %7.1f ms   p90 %7.1f ms   (n=%d)", percentile(values, 0.5), percentile(values, 0.9), values.count)
}

/// The workload name devrun gives a file (its base name without what Nex drops).
func sharedNameOf(_ file: String) -> String { URL(fileURLWithPath: file).lastPathComponent.filter { $0 != "." } }

/// Runs `nex` to completion; exits the benchmark when it fails.
@discardableResult
func nexRun(_ arguments: [String], env: [String: String?] = developer) async throws -> String {
    let result = try await TestEnvironment.runAllowingFailure(nex, arguments, environment: env)
    guard result.status == 0 else {
        print("nex \(arguments.joined(separator: " ")) failed: \(result.stderr)")
        exit(1)
    }
    return result.stdout
}

/// `nex node up` with its own resource directory; returns the process and the node id.
func nodeUp(servers: String, home: String) async throws -> (PeerProcess, String) {
    let process = try await PeerProcess.start(
        nex, ["node", "up", "-s", servers, "--config", config, "--log-level", "error"], environment: ["NEX_HOME": home])
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        if let up = process.output.first(where: { $0.contains(" is up") }),
            let id = up.split(separator: " ").map(String.init).first(where: { $0.hasPrefix("N") && $0.count == 56 })
        {
            return (process, id)
        }
        try await Task.sleep(for: .milliseconds(2))
    }
    print("the node did not come up: \(process.errorOutput)")
    exit(1)
}

/// Time until `subject` answers `payload` back (polled; no-responders come back at once).
func untilAnswered(_ subject: String, client: NATSClient, from start: ContinuousClock.Instant) async throws -> Duration
{
    while ContinuousClock.now - start < .seconds(60) {
        if let reply = try? await client.request("ping", to: subject, timeout: .milliseconds(250)),
            reply.string == "ping"
        {
            return ContinuousClock.now - start
        }
        try await Task.sleep(for: .milliseconds(2))
    }
    print("\(subject) did not answer within 60 s")
    exit(1)
}

let requestTimeout = Duration.milliseconds(100)

/// Sends sequential requests until `stop`; returns the longest time between two answers and the failures.
actor GapMeter {
    private var lastAnswer = ContinuousClock.now
    private var longest: Duration = .zero
    private var failures = 0
    private var running = true

    func run(_ subject: String, client: NATSClient) async {
        lastAnswer = ContinuousClock.now
        while running {
            if let reply = try? await client.request("gap", to: subject, timeout: requestTimeout),
                reply.string == "gap"
            {
                let now = ContinuousClock.now
                longest = max(longest, now - lastAnswer)
                lastAnswer = now
            } else {
                failures += 1
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// Ends the measurement; an outage still running counts up to now.
    func stop() -> (Duration, Int) {
        running = false
        return (max(longest, ContinuousClock.now - lastAnswer), failures)
    }

    /// Whether an answer came after `instant`.
    func answered(after instant: ContinuousClock.Instant) -> Bool { lastAnswer > instant }
}

// MARK: 1. Node start → answering

print("== node start → answering (\(rounds) restarts each; no sandbox)")
let single = try await NATSServer.start(.init(jetStream: true))
let restartHome = work + "/restart-node"
var (node, nodeID) = try await nodeUp(servers: single.url, home: restartHome)
let client = NATSClient(configuration: .init(servers: [single.url]))
try await client.connect()

var emptyStarts: [Double] = []
for _ in 0..<rounds {
    node.signal(SIGTERM)
    _ = try await node.waitForExit(timeout: .seconds(60))
    let start = ContinuousClock.now
    (node, nodeID) = try await nodeUp(servers: single.url, home: restartHome)
    while (try? await client.request([UInt8](), to: "$NEX.PING.\(nodeID)", timeout: .milliseconds(250))) == nil {
        try await Task.sleep(for: .milliseconds(2))
    }
    emptyStarts.append(millis(ContinuousClock.now - start))
}
try await nexRun(["devrun", echo, "nats_url=\(single.url)", "-s", single.url])
try await nexRun(["devrun", function, "--trigger_subject=fn.echo", "-s", single.url])
_ = try await untilAnswered("svc.echo", client: client, from: .now)
_ = try await untilAnswered("fn.echo", client: client, from: .now)

var readoption: [String: (service: [Double], function: [Double])] = [:]
for kind in ["SIGTERM", "SIGKILL"] {
    var service: [Double] = []
    var fn: [Double] = []
    for _ in 0..<rounds {
        if kind == "SIGTERM" { node.signal(SIGTERM) } else { node.signalGroup(SIGKILL) }
        _ = try await node.waitForExit(timeout: .seconds(60))
        let start = ContinuousClock.now
        (node, nodeID) = try await nodeUp(servers: single.url, home: restartHome)
        service.append(millis(try await untilAnswered("svc.echo", client: client, from: start)))
        fn.append(millis(try await untilAnswered("fn.echo", client: client, from: start)))
    }
    readoption[kind] = (service, fn)
}
print("  empty node, start → $NEX.PING answered          \(describe(emptyStarts))")
for kind in ["SIGTERM", "SIGKILL"] {
    let (service, fn) = readoption[kind]!
    print("  after \(kind), start → native service answers  \(describe(service))")
    print("  after \(kind), start → JS function answers     \(describe(fn))")
}
node.signal(SIGTERM)
_ = try await node.waitForExit(timeout: .seconds(60))
await client.close()
single.stop()

// MARK: 2. The node's server dies

let gapRounds = max(3, rounds / 2)
print("== request gap when the node's server dies (three-server cluster, \(gapRounds) rounds)")
let cluster = try await NATSCluster.start(size: 3, jetStream: true)
var clusterNode = try await nodeUp(servers: cluster.urls.joined(separator: ","), home: work + "/cluster-node")
try await nexRun(["devrun", function, "--trigger_subject=fn.echo", "-s", cluster.urls.joined(separator: ",")])
var serverGaps: [Double] = []
var serverFailures: [Int] = []
var servers = cluster.servers
for _ in 0..<gapRounds {
    // The node's server: the one whose connections hold its control subscription.
    guard
        let index = servers.firstIndex(where: { server in
            guard let port = server.monitoringPort,
                let data = try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/connz?subs=1")!),
                let connz = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return false }
            return (connz["connections"] as? [[String: Any]] ?? []).contains {
                ($0["subscriptions_list"] as? [String])?.contains("$NEX.PING.\(clusterNode.1)") == true
            }
        })
    else {
        print("cannot find the node's server")
        exit(1)
    }
    let requesterServer = servers[(index + 1) % servers.count]
    let requester = NATSClient(configuration: .init(servers: [requesterServer.url]))
    try await requester.connect()
    _ = try await untilAnswered("fn.echo", client: requester, from: .now)
    let meter = GapMeter()
    let measuring = Task { await meter.run("fn.echo", client: requester) }
    try await Task.sleep(for: .milliseconds(300))
    let killed = ContinuousClock.now
    servers[index].kill()
    while await !meter.answered(after: killed), ContinuousClock.now - killed < .seconds(30) {
        try await Task.sleep(for: .milliseconds(5))
    }
    try await Task.sleep(for: .milliseconds(500))
    let (gap, failed) = await meter.stop()
    await measuring.value
    serverGaps.append(millis(gap))
    serverFailures.append(failed)
    await requester.close()
    servers[index] = try await servers[index].restart()
    try await Task.sleep(for: .seconds(1))  // routes re-form before the next round
}
print("  longest gap between answers                      \(describe(serverGaps))")
print("  per round (ms)                                   \(serverGaps.map { Int($0.rounded()) })")
print("  failed requests per round (100 ms timeout)       \(serverFailures)")
clusterNode.0.signal(SIGTERM)
_ = try await clusterNode.0.waitForExit(timeout: .seconds(60))
for server in servers { server.stop() }

// MARK: 3. A node is SIGKILLed while another serves the same function

print("== request gap when one of two nodes serving a function is SIGKILLed (\(gapRounds) rounds)")
let shared = try await NATSServer.start(.init(jetStream: true))
let first = try await nodeUp(servers: shared.url, home: work + "/first")
let second = try await nodeUp(servers: shared.url, home: work + "/second")
let sharedClient = NATSClient(configuration: .init(servers: [shared.url]))
try await sharedClient.connect()
try await nexRun(["devrun", function, "--trigger_subject=fn.shared", "-s", shared.url])
let holder = try await nexRun(["ls", "--json", "-s", shared.url])
let onFirst = holder.contains(first.1)
let other = onFirst ? second.1 : first.1
try await nexRun([
    "run", "nats://NEXCLIFILES/" + sharedNameOf(function), other, "--name", sharedNameOf(function), "--type", "v8",
    "--trigger_subject", "fn.shared", "--issuer", work + "/developer/issuer.nk", "--xkey",
    work + "/developer/publisher.xk", "-s", shared.url,
])
// The node that gets killed each round, restarted (with its workload) before the next.
var victim = onFirst ? first : second
let survivor = onFirst ? second : first
var killGaps: [Double] = []
var killFailures: [Int] = []
let sharedName = sharedNameOf(function)
for _ in 0..<gapRounds {
    // Both nodes serve (the victim re-adopted its instance) before the kill.
    while try await !nexRun(["ls", sharedName, "--json", "-s", shared.url]).contains(victim.1) {
        try await Task.sleep(for: .milliseconds(20))
    }
    _ = try await untilAnswered("fn.shared", client: sharedClient, from: .now)
    let meter = GapMeter()
    let measuring = Task { await meter.run("fn.shared", client: sharedClient) }
    try await Task.sleep(for: .milliseconds(300))
    victim.0.signalGroup(SIGKILL)
    _ = try await victim.0.waitForExit(timeout: .seconds(30))
    try await Task.sleep(for: .seconds(1))
    let (gap, failed) = await meter.stop()
    await measuring.value
    killGaps.append(millis(gap))
    killFailures.append(failed)
    victim = try await nodeUp(servers: shared.url, home: work + (onFirst ? "/first" : "/second"))
}
print("  longest gap between answers                      \(describe(killGaps))")
print("  per round (ms)                                   \(killGaps.map { Int($0.rounded()) })")
print("  failed requests per round (100 ms timeout)       \(killFailures)")
await sharedClient.close()
for process in [victim.0, survivor.0] {
    process.signal(SIGTERM)
    _ = try? await process.waitForExit(timeout: .seconds(60))
}
shared.stop()
try? FileManager.default.removeItem(atPath: work)
