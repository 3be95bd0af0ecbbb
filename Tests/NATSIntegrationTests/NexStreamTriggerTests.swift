import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
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
}
