// One benchmark of this project's NATS client; prints one JSON line. The same modes exist for nats.go
// and nats-py (Benchmarks/peers) so scripts/bench.sh can run them side by side against one server.
//
//   nats-bench URL pub N SIZE       publish N messages, then flush          -> msgs_per_sec
//   nats-bench URL pubsub N SIZE    publisher and subscriber connections    -> msgs_per_sec (all received)
//   nats-bench URL reqrep N SIZE    sequential requests to a responder      -> p50_us, p99_us
//   nats-bench URL reqrep-loop N SIZE  the same, the requesting task preferring the client's event loop
//                                      (`Task(executorPreference: client.taskExecutor)`), an opt-in
//   nats-bench URL jspub N SIZE     JetStream async publish (4000 acks in flight), memory stream -> msgs_per_sec
//   nats-bench URL kvput N SIZE     sequential key-value puts (each waits for its ack)          -> ops_per_sec
//   nats-bench URL kvget N SIZE     sequential key-value gets of 1000 keys (direct get)          -> ops_per_sec
import Foundation
import NATS
import NATSJetStream

let args = CommandLine.arguments
guard args.count == 5, let n = Int(args[3]), let size = Int(args[4]) else {
    FileHandle.standardError.write(Data("usage: nats-bench URL pub|pubsub|reqrep|reqrep-loop N SIZE\n".utf8))
    exit(2)
}
let url = args[1]
let mode = args[2]
let payload = [UInt8](repeating: 0x61, count: size)

func connect() async throws -> NATSClient {
    var config = NATSClient.Configuration(servers: [url])
    config.subscriptionPendingMessages = .max
    config.subscriptionPendingBytes = .max
    config.requestTimeout = .seconds(10)
    let client = NATSClient(configuration: config)
    try await client.connect()
    return client
}

func printJSON(_ fields: [String: Double]) {
    let body = fields.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",")
    print("{\"client\":\"swift\",\"mode\":\"\(mode)\",\(body)}")
}

let clock = ContinuousClock()
func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

switch mode {
case "pub":
    let pub = try await connect()
    let start = clock.now
    for _ in 0..<n { try await pub.publish(payload, to: "bench.pub") }
    try await pub.flush(timeout: .seconds(60))
    printJSON(["msgs_per_sec": Double(n) / seconds(clock.now - start)])
    await pub.close()

case "pubsub":
    let sub = try await connect()
    let pub = try await connect()
    let subscription = try await sub.subscribe(to: "bench.pubsub")
    try await sub.flush()
    let start = clock.now
    let receiver = Task {
        var count = 0
        for try await _ in subscription {
            count += 1
            if count == n { break }
        }
        return clock.now
    }
    for _ in 0..<n { try await pub.publish(payload, to: "bench.pubsub") }
    try await pub.flush(timeout: .seconds(60))
    let end = try await receiver.value
    printJSON(["msgs_per_sec": Double(n) / seconds(end - start)])
    await pub.close()
    await sub.close()

case "reqrep", "reqrep-loop":
    let responder = try await connect()
    let requester = try await connect()
    let subject = "bench.svc"
    try await responder.subscribe(to: subject) { m in
        try await m.respond(m.payload, using: responder)
    }
    try await responder.flush()
    for _ in 0..<min(1000, n) { _ = try await requester.request(payload, to: subject) }  // warm-up
    let onLoop = mode == "reqrep-loop"
    var latencies = try await Task.detached(executorPreference: onLoop ? requester.taskExecutor : nil) {
        var latencies: [Double] = []
        latencies.reserveCapacity(n)
        for _ in 0..<n {
            let t0 = clock.now
            _ = try await requester.request(payload, to: subject)
            latencies.append(seconds(clock.now - t0) * 1e6)
        }
        return latencies
    }.value
    latencies.sort()
    printJSON(["p50_us": latencies[n / 2], "p99_us": latencies[n * 99 / 100]])
    await requester.close()
    await responder.close()

case "jspub":
    let client = try await connect()
    let js = JetStreamContext(client: client)
    try? await js.deleteStream("BENCH_SWIFT")
    var config = StreamConfig(name: "BENCH_SWIFT", subjects: ["bench.js.swift"])
    config.storage = .memory
    _ = try await js.createStream(config)
    let publisher = try await JetStreamAsyncPublisher(js: js, maxPending: 4000)
    let start = clock.now
    for _ in 0..<n { try await publisher.publish(payload, to: "bench.js.swift") }
    let summary = await publisher.waitForCompletion(timeout: .seconds(120))
    let elapsed = seconds(clock.now - start)
    guard summary.acknowledged == n else {
        FileHandle.standardError.write(Data("only \(summary.acknowledged) of \(n) acknowledged\n".utf8))
        exit(1)
    }
    printJSON(["msgs_per_sec": Double(n) / elapsed])
    try await js.deleteStream("BENCH_SWIFT")
    await client.close()

case "kvput", "kvget":
    let client = try await connect()
    let js = JetStreamContext(client: client)
    try? await js.deleteKeyValue("bench_swift")
    var config = KeyValueConfig(bucket: "bench_swift")
    config.storage = .memory
    let kv = try await js.createKeyValue(config)
    let keys = (0..<1000).map { "key.\($0)" }
    for key in keys { try await kv.put(key, payload) }
    // Like reqrep: the sequential loop runs in a plain task, not on the main actor.
    let elapsed = try await Task.detached {
        let start = clock.now
        if mode == "kvput" {
            for i in 0..<n { try await kv.put(keys[i % keys.count], payload) }
        } else {
            for i in 0..<n { _ = try await kv.get(keys[i % keys.count]) }
        }
        return clock.now - start
    }.value
    printJSON(["ops_per_sec": Double(n) / seconds(elapsed)])
    try await js.deleteKeyValue("bench_swift")
    await client.close()

default:
    FileHandle.standardError.write(Data("unknown mode \(mode)\n".utf8))
    exit(2)
}
