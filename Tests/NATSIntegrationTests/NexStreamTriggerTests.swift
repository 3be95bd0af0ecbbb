import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// Stream, key-value and object-store triggers, through a real node, real agents and real functions.
extension NexWorkloadTests {
    /// A JavaScript function that reports each message it handled on `done.<payload>` (through the messaging
    /// host service) and fails on `poison`.
    func reportingFunction(in server: NATSServer) throws -> String {
        let path = server.directory.appendingPathComponent("report-\(UUID().uuidString).js").path
        try """
        (subject, payload) => {
          const text = new TextDecoder().decode(payload);
          if (text === 'poison') throw new Error('cannot digest ' + text);
          this.hostServices.messaging.publish('done.' + subject, payload);
          return payload;
        }
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Every message of a stream is handled once and acknowledged; a poison message is retried, then
    /// dead-lettered after exactly `max_deliver` deliveries with the headers that say why; the consumer is
    /// the one every copy shares.
    @Test func aStreamTriggerHandlesEveryMessageAndDeadLettersPoison() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "ORDERS", subjects: ["orders.>"]))
            var dlq = StreamConfig(name: "DEAD", subjects: ["dlq.orders"])
            dlq.duplicateWindow = .seconds(60)
            _ = try await js.createStream(dlq)
            let done = try await MessageRecorder(h.client, subject: "done.>")

            var delivery = TriggerDelivery()
            delivery.maxDeliver = 3
            delivery.backoff = ["100ms", "200ms"]
            delivery.deadLetterSubject = "dlq.orders"
            delivery.maxBatch = 8
            delivery.maxConcurrency = 4
            let run = try await h.deploy(
                file: try reportingFunction(in: h.server), name: "orders", type: "v8",
                triggerList: [.stream(StreamTrigger(stream: "ORDERS", filterSubject: "orders.>", delivery: delivery))])
            #expect(run.started)
            let durable = JetStreamTriggerPlan.durableName(namespace: "default", name: "orders", index: 0)
            #expect(try await js.consumerNames(stream: "ORDERS") == [durable])

            for i in 0..<40 { _ = try await js.publish(Array("m\(i)".utf8), to: "orders.new") }
            _ = try await js.publish(Array("poison".utf8), to: "orders.new")
            try await eventually("every message handled", timeout: .seconds(30)) {
                let info = try await js.consumerInfo(stream: "ORDERS", name: durable)
                return info.ackFloor.streamSequence == 41 && info.pendingAcks == 0 && info.pending == 0
            }
            // Exactly once each in a healthy run.
            let handled = done.messages.map { String(decoding: $0.payload, as: UTF8.self) }
            #expect(handled.count == 40 && Set(handled).count == 40, "\(handled.sorted())")

            let dead = try await js.getMessage(stream: "DEAD", sequence: 1)
            #expect(String(decoding: dead.payload, as: UTF8.self) == "poison")
            #expect(dead.headers?["Nex-Dead-Letter-Stream"] == "ORDERS")
            #expect(dead.headers?["Nex-Dead-Letter-Sequence"] == "41")
            #expect(dead.headers?["Nex-Dead-Letter-Deliveries"] == "3")
            #expect(dead.headers?["Nex-Dead-Letter-Error"]?.contains("cannot digest poison") == true)
            #expect(try await js.streamInfo("DEAD").state.messages == 1)
        }
    }

    /// A function that fails the first attempt of every 7th message: each message is done exactly once after
    /// its retry, and the function sees each message's delivery count and stream sequence (its `ctx`).
    @Test func failedFirstAttemptsAreRetriedOnce() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "WORK", subjects: ["work.>"]))
            let done = try await MessageRecorder(h.client, subject: "done.>")
            let file = h.server.directory.appendingPathComponent("flaky.js").path
            try """
            (subject, payload, ctx) => {
              const n = parseInt(new TextDecoder().decode(payload), 10);
              if (n % 7 === 0 && ctx.delivered === 1) throw new Error('first attempts of every 7th fail');
              this.hostServices.messaging.publish('done.' + n + '.' + ctx.delivered + '.' + ctx.sequence, payload);
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
            var delivery = TriggerDelivery()
            delivery.maxConcurrency = 4
            delivery.maxBatch = 16
            _ = try await h.deploy(
                file: file, name: "flaky", type: "v8",
                triggerList: [.stream(StreamTrigger(stream: "WORK", delivery: delivery))])
            for n in 1...70 { _ = try await js.publish(Array("\(n)".utf8), to: "work.item") }
            try await eventually("seventy done", timeout: .seconds(30)) { done.messages.count >= 70 }
            let durable = JetStreamTriggerPlan.durableName(namespace: "default", name: "flaky", index: 0)
            try await eventually("all acknowledged") {
                try await js.consumerInfo(stream: "WORK", name: durable).ackFloor.streamSequence == 70
            }
            let seen = done.messages.map { $0.subject.split(separator: ".").map(String.init) }
            #expect(seen.count == 70, "\(seen.count) done")
            #expect(Set(seen.map { $0[1] }).count == 70, "a message done twice or never")
            for parts in seen {
                let (n, delivered, sequence) = (Int(parts[1])!, Int(parts[2])!, Int(parts[3])!)
                #expect(delivered == (n % 7 == 0 ? 2 : 1), "message \(n) done on delivery \(delivered)")
                #expect(sequence == n, "message \(n) has stream sequence \(sequence)")
            }
        }
    }

    /// What cannot run is refused at deploy with the fix, and the deploy leaves nothing running: a stream that
    /// does not exist, a bucket that does not exist.
    @Test func aTriggerOnAMissingStreamIsRefusedAtDeploy() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let file = try reportingFunction(in: h.server)
            let missing = await #expect(throws: NexError.self) {
                try await h.deploy(
                    file: file, name: "nostream", type: "v8", triggerList: [.stream(StreamTrigger(stream: "NOPE"))])
            }
            #expect(
                missing?.message.contains("the stream NOPE does not exist") == true, "\(String(describing: missing))")
            let bucket = await #expect(throws: NexError.self) {
                try await h.deploy(
                    file: file, name: "nobucket", type: "v8",
                    triggerList: [.keyValue(KeyValueTrigger(bucket: "nobucket"))])
            }
            // $KV is reserved: the operator must open the bucket first.
            #expect(bucket?.message.contains("belong to NATS and Nex") == true, "\(String(describing: bucket))")
            // Nor can a stream trigger without a filter read the bucket's stream.
            _ = try await JetStreamContext(client: h.client).createKeyValue(KeyValueConfig(bucket: "secrets"))
            let sideDoor = await #expect(throws: NexError.self) {
                try await h.deploy(
                    file: file, name: "sidedoor", type: "v8",
                    triggerList: [.stream(StreamTrigger(stream: "KV_secrets"))])
            }
            #expect(
                sideDoor?.message.contains("stream KV_secrets holds $KV.secrets.>, which this namespace may not read")
                    == true, "\(String(describing: sideDoor))")
            #expect(try await h.nex.info(node: h.node.nodeID).machines.isEmpty)
        }
    }

    /// Key-value changes of matching keys and operations only, once the operator opened the bucket.
    @Test func aKeyValueTriggerSeesPutsDeletesAndPurgesOfItsKeys() async throws {
        try await withNode({
            $0.workloadTypes = [.native, .v8]
            $0.subjectPolicy.allowReserved = ["$KV.settings.>"]
        }) { h in
            let js = JetStreamContext(client: h.client)
            let kv = try await js.createKeyValue(KeyValueConfig(bucket: "settings", history: 5))
            let done = try await MessageRecorder(h.client, subject: "done.>")
            _ = try await h.deploy(
                file: try reportingFunction(in: h.server), name: "watcher", type: "v8",
                triggerList: [
                    .keyValue(KeyValueTrigger(bucket: "settings", key: "feature.>", operations: ["put", "delete"]))
                ])
            _ = try await kv.put("feature.a", "on")
            _ = try await kv.put("other.b", "ignored")
            try await kv.delete("feature.a")
            try await kv.purge("feature.x")  // not an operation this trigger takes
            _ = try await kv.put("feature.d", "last")
            try await eventually("the changes of feature.> handled", timeout: .seconds(20)) {
                done.messages.contains { $0.subject == "done.$KV.settings.feature.d" }
            }
            let subjects = done.messages.map(\.subject)
            #expect(
                subjects == [
                    "done.$KV.settings.feature.a", "done.$KV.settings.feature.a", "done.$KV.settings.feature.d",
                ], "\(subjects)")
        }
    }

    /// A schedule of `every: 1s` on two nodes fires once per tick in total: the ticks come at least a second
    /// apart (a copy per node each firing would halve that), and the stop of the last copy removes the
    /// schedule while the stop of the first does not.
    @Test func aScheduleOnTwoNodesFiresOncePerTick() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            // A second node on the same server, with its own home and connection.
            var config = NodeConfiguration()
            config.noSandbox = true
            config.workloadTypes = [.native, .v8]
            config.defaultResourceDir = h.server.directory.appendingPathComponent("second").path
            try await withClient([h.server.url]) { secondClient in
                let second = NexNode(configuration: config, client: secondClient, heartbeatInterval: .seconds(30))
                try await second.start()
                do {
                    try await scheduleOnTwoNodes(h, second)
                } catch {
                    await second.stop(graceful: true)
                    throw error
                }
                await second.stop(graceful: true)
            }
        }
    }

    private func scheduleOnTwoNodes(_ h: Harness, _ second: NexNode) async throws {
        let file = try reportingFunction(in: h.server)
        let trigger = WorkloadTrigger.schedule(ScheduleTrigger(every: "1s", payload: "tick"))
        let done = try await MessageRecorder(h.client, subject: "done.>")
        let start = Date()
        let first = try await h.deploy(file: file, name: "ticker", type: "v8", triggerList: [trigger])
        let (location, hash) = try await h.nex.uploadArtifact(file: file, key: "ticker")
        var request = try NexControlClient.makeDeployRequest(
            name: "ticker", type: "v8", location: location, hash: hash, issuer: h.issuer, publisher: h.publisher,
            targetNode: second.nodeID, targetXkey: second.xkey.publicKey)
        request.triggers = [trigger]
        let other = try await h.nex.deploy(request, to: second.nodeID)

        try await eventually("five ticks handled", timeout: .seconds(30)) { done.messages.count >= 5 }
        // The schedule was stored after `start`, and its fifth tick comes 5 s after that at the earliest (a slow
        // machine only delays ticks); one schedule per node would have made five in half the time.
        let fifth = done.messages[4].received.timeIntervalSince(start)
        #expect(fifth > 4.5, "five ticks within \(fifth) s")
        #expect(done.messages.allSatisfy { $0.subject == "done.$NEX.tick.default.ticker.0" })

        // One schedule, one consumer, whatever the number of copies.
        let js = JetStreamContext(client: h.client)
        let scheduleSubject = ScheduleStream.scheduleSubject(namespace: "default", name: "ticker", index: 0)
        let schedules = try await js.subjectCounts(stream: ScheduleStream.name, filter: "$NEX.schedule.>")
        #expect(schedules == [scheduleSubject: 1])
        #expect(
            try await js.consumerNames(stream: ScheduleStream.name)
                == [JetStreamTriggerPlan.durableName(namespace: "default", name: "ticker", index: 0)])
        _ = try await h.nex.stop(workloadID: first.id, node: h.node.nodeID, issuer: h.issuer)
        #expect(try await js.getMessage(stream: ScheduleStream.name, lastOnSubject: scheduleSubject).sequence > 0)
        _ = try await h.nex.stop(workloadID: other.id, node: second.nodeID, issuer: h.issuer)
        let gone = await #expect(throws: JetStreamError.self) {
            try await js.getMessage(stream: ScheduleStream.name, lastOnSubject: scheduleSubject)
        }
        #expect(gone?.errorCode == JetStreamError.Known.noMessageFound)
    }
}
