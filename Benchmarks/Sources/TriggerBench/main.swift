// Stream-trigger benchmark, side by side in one run on one nats-server: messages per second through a stream
// trigger into a JavaScript function and a WebAssembly function (max_batch = max_concurrency = 1 and 64), and
// a nats.go pull consumer doing the same trivial work with the same confirmed acks; then publish-to-ack latency
// of one message at a time. Usage: trigger-bench AGENT EXAMPLES_DIR GO_PEER [MESSAGES] [ROUNDS]. Run through
// scripts/bench-triggers.sh.
//
// Throughput: the messages are in the stream before the trigger starts; the rate is counted from the first
// acknowledgement to the last, as the server sees them (the node's AckSync requests on $JS.ACK, watched by
// another connection). Rounds alternate between Nex and nats.go; medians are printed.
import BenchSupport
import Foundation
import NATS
import NATSJetStream
import NIOPosix
import NexModels
import Synchronization

let args = CommandLine.arguments
guard args.count >= 4 else {
    print("usage: trigger-bench AGENT EXAMPLES_DIR GO_PEER [MESSAGES] [ROUNDS]")
    exit(2)
}
let messages = args.count > 4 ? Int(args[4]) ?? 20000 : 20000
let rounds = max(1, args.count > 5 ? Int(args[5]) ?? 3 : 3)
let goPeer = args[3]
let bench = try await BenchNode.start(name: "trigger-bench", agent: args[1]) { $0.workloadTypes = [.v8, .wasm] }
// The publisher and the ack watcher stand for other processes: an event-loop thread of their own.
let observer = NATSClient(
    configuration: .init(servers: [bench.server.url]), eventLoopGroup: MultiThreadedEventLoopGroup(numberOfThreads: 1))
try await observer.connect()
let js = JetStreamContext(client: observer)

let trivial = FileManager.default.temporaryDirectory.appendingPathComponent("trigger-bench.js").path
try "(subject, payload) => {};\n".write(toFile: trivial, atomically: true, encoding: .utf8)
let artifacts = [
    "v8": try await bench.upload(trivial, key: "trigger-js"),
    "wasm": try await bench.upload(args[2] + "/wasm/echofunction.wasm", key: "trigger-wasm"),
]

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// Counts the confirmed acks of `stream`'s consumers as the server receives them.
final class AckWatch: Sendable {
    /// How many acks came, and when the first and the last did.
    final class Counts: Sendable {
        let state = Mutex<(count: Int, first: ContinuousClock.Instant?, last: ContinuousClock.Instant?)>((0, nil, nil))
    }
    private let counts = Counts()
    let acks: AsyncStream<ContinuousClock.Instant>
    let subscription: NATSSubscription

    init(stream: String) async throws {
        let (acks, ack) = AsyncStream.makeStream(of: ContinuousClock.Instant.self)
        self.acks = acks
        let counts = self.counts
        subscription = try await observer.subscribe(to: "$JS.ACK.\(stream).>") { m in
            guard m.bytes.starts(with: Array("+ACK".utf8)) else { return }  // not a keep-alive
            let now = ContinuousClock.now
            counts.state.withLock { s in
                s.count += 1
                if s.first == nil { s.first = now }
                s.last = now
            }
            ack.yield(now)
        }
        try await observer.flush()
    }

    /// Messages per second from the first ack to the last, once `total` have come (within two minutes).
    func rate(total: Int) async -> Double {
        let counts = self.counts
        let timeout = Task {
            try await Task.sleep(for: .seconds(120))
            fatalError("\(counts.state.withLock { $0.count }) of \(total) messages acknowledged in two minutes")
        }
        defer { timeout.cancel() }
        var seen = 0
        for await _ in acks {
            seen += 1
            if seen == total { break }
        }
        let (count, first, last) = counts.state.withLock { $0 }
        guard let first, let last, count > 1 else { return .nan }
        return Double(count - 1) / seconds(last - first)
    }
}

/// Names each round's stream, subject and workload.
let roundCounter = Mutex(0)
func nextRound() -> Int {
    roundCounter.withLock { n in
        n += 1
        return n
    }
}

/// Deploys a function of `type` on a stream of `messages` messages with `batch`; its rate.
func nexRate(type: String, batch: Int, messages: Int) async throws -> Double {
    let round = nextRound()
    let stream = "TRIGGER_\(round)"
    let subject = "trigger.\(round)"
    var config = StreamConfig(name: stream, subjects: [subject])
    config.storage = .memory
    _ = try await js.createStream(config)
    for i in 0..<messages { try await observer.publish(Array("\(i)".utf8), to: subject) }
    try await observer.flush()
    while try await js.streamInfo(stream).state.messages < UInt64(messages) {
        try await Task.sleep(for: .milliseconds(10))
    }
    let watch = try await AckWatch(stream: stream)
    var delivery = TriggerDelivery()
    delivery.maxBatch = batch
    delivery.maxConcurrency = batch
    let run = try await bench.deploy(
        artifacts[type]!, name: "trigger-\(round)", type: type,
        triggerList: [.stream(StreamTrigger(stream: stream, delivery: delivery))])
    let rate = await watch.rate(total: messages)
    _ = try await bench.nex.stop(workloadID: run.id, node: bench.node.nodeID, issuer: bench.issuer)
    try await watch.subscription.unsubscribe()
    try await js.deleteStream(stream)
    return rate
}

/// Publish-to-ack of one message at a time through a JavaScript function (max_batch 1), in µs.
func nexLatency(count: Int) async throws -> [Double] {
    let round = nextRound()
    let stream = "TRIGGER_\(round)"
    let subject = "trigger.\(round)"
    var config = StreamConfig(name: stream, subjects: [subject])
    config.storage = .memory
    _ = try await js.createStream(config)
    let watch = try await AckWatch(stream: stream)
    let run = try await bench.deploy(
        artifacts["v8"]!, name: "trigger-\(round)", type: "v8",
        triggerList: [.stream(StreamTrigger(stream: stream))])
    var acks = watch.acks.makeAsyncIterator()
    var out: [Double] = []
    for i in 0..<(count + 50) {
        let start = ContinuousClock.now
        _ = try await js.publish(Array("\(i)".utf8), to: subject)
        guard let acked = await acks.next() else { break }
        if i >= 50 { out.append(seconds(acked - start) * 1e6) }  // the first 50 warm up
    }
    _ = try await bench.nex.stop(workloadID: run.id, node: bench.node.nodeID, issuer: bench.issuer)
    try await watch.subscription.unsubscribe()
    try await js.deleteStream(stream)
    return out
}

/// Runs the nats.go peer in `mode`; its JSON answer. (Blocking: called from a detached task.)
func goPeerRun(_ mode: String, _ count: Int, _ size: Int) async throws -> [String: Double] {
    try await Task.detached { try goPeerRunBlocking(mode, count, size) }.value
}

func goPeerRunBlocking(_ mode: String, _ count: Int, _ size: Int) throws -> [String: Double] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: goPeer)
    process.arguments = [bench.server.url, mode, "\(count)", "\(size)"]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0,
        let answer = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
        fatalError("the nats.go peer failed in mode \(mode): \(String(decoding: data, as: UTF8.self))")
    }
    return answer.compactMapValues { $0 as? Double }
}

func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

print(
    "== stream trigger throughput: \(messages) messages a round (an eighth with max_batch 1), \(rounds) rounds, "
        + "medians (msgs/s)")
var rows: [(String, Double, Double)] = []
for batch in [1, 64] {
    // Fewer messages one at a time: each waits a pull and a confirmed ack.
    let count = batch == 1 ? max(1000, messages / 8) : messages
    var nexJS: [Double] = []
    var nexWasm: [Double] = []
    var go: [Double] = []
    for _ in 0..<rounds {
        nexJS.append(try await nexRate(type: "v8", batch: batch, messages: count))
        go.append(try await goPeerRun("jstrigger", count, batch)["msgs_per_sec"] ?? .nan)
        nexWasm.append(try await nexRate(type: "wasm", batch: batch, messages: count))
    }
    rows.append(("JavaScript, max_batch \(batch)", median(nexJS), median(go)))
    rows.append(("WebAssembly, max_batch \(batch)", median(nexWasm), median(go)))
}

print("                                  Nex       nats.go   Nex/nats.go")
for (name, nex, go) in rows {
    print(
        name.padding(toLength: 30, withPad: " ", startingAt: 0)
            + String(format: "%9.0f %11.0f %9.2f", nex, go, nex / go))
}

let latencyCount = 500
// Both sides stamp an ack when the server sees it, skip 50 to warm up, and take percentiles over all their
// messages (nats.go in one run of rounds × count).
var ours: [Double] = []
for _ in 0..<rounds { ours += try await nexLatency(count: latencyCount) }
let theirs = try await goPeerRun("jstriggerlatency", latencyCount * rounds, 16)
print("== publish-to-ack, one message at a time (JavaScript, max_batch 1), µs, \(rounds) × \(latencyCount)")
print(
    String(
        format: "Nex      p50 %7.0f  p99 %7.0f\nnats.go  p50 %7.0f  p99 %7.0f",
        percentile(ours, 0.5), percentile(ours, 0.99), theirs["p50_us"] ?? .nan, theirs["p99_us"] ?? .nan))
await observer.close()
await bench.stop()
