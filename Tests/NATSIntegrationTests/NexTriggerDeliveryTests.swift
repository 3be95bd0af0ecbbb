import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// How JetStream triggers deliver when things go wrong, and when several nodes share them: permanent failures,
/// a last attempt that never finishes, two nodes splitting one stream, object-store watches and a work queue
/// another consumer already reads. Real server, real nodes, real agents and functions.
extension NexWorkloadTests {
    /// A second node on the harness's server, with its own home and connection, for the length of `body`.
    func withSecondNode(_ h: Harness, _ body: (NexNode) async throws -> Void) async throws {
        var config = NodeConfiguration()
        config.noSandbox = true
        config.workloadTypes = [.native, .v8, .wasm]
        config.defaultResourceDir = h.server.directory.appendingPathComponent("second").path
        try await withClient([h.server.url]) { client in
            let second = NexNode(configuration: config, client: client, heartbeatInterval: .seconds(30))
            try await second.start()
            do {
                try await body(second)
            } catch {
                await second.stop(graceful: true)
                throw error
            }
            await second.stop(graceful: true)
        }
    }

    /// Deploys `file` as `name` on `node` (another than the harness's own).
    func deployCopy(
        _ h: Harness, on node: NexNode, file: String, name: String, type: String, triggers: [WorkloadTrigger]
    ) async throws -> RunResponse {
        let (location, hash) = try await h.nex.uploadArtifact(file: file, key: name)
        var request = try NexControlClient.makeDeployRequest(
            name: name, type: type, location: location, hash: hash, issuer: h.issuer, publisher: h.publisher,
            targetNode: node.nodeID, targetXkey: node.xkey.publicKey)
        request.triggers = triggers
        return try await h.nex.deploy(request, to: node.nodeID)
    }

    /// The sum of a metric's series on `node` whose labels contain `labels`.
    func metricValue(_ node: NexNode, _ name: String, _ labels: String = "") async -> Double {
        let text = String(decoding: node.metrics.render(await node.metricsSnapshot()), as: UTF8.self)
        return text.split(separator: "\n").filter { $0.hasPrefix(name + "{") && $0.contains(labels) }.reduce(0) {
            $0 + (Double($1.split(separator: " ").last ?? "") ?? 0)
        }
    }

    /// A dead-letter stream on `subject` that drops repeats (as the issue's dead letters expect).
    func deadLetterStream(_ js: JetStreamContext, subject: String) async throws {
        var dlq = StreamConfig(name: "DEAD", subjects: [subject])
        dlq.duplicateWindow = .seconds(60)
        _ = try await js.createStream(dlq)
    }

    /// A failure the function marks permanent is dead-lettered on its first delivery; an ordinary one is
    /// retried up to `max_deliver`: a JavaScript error with `permanent: true`, a WebAssembly exit with 65.
    @Test func permanentFailuresAreDeadLetteredAtOnce() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8, .wasm] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "JOBS", subjects: ["js.>", "w.>"]))
            try await deadLetterStream(js, subject: "dlq.jobs")
            let file = h.server.directory.appendingPathComponent("picky.js").path
            try """
            (subject, payload) => {
              const text = new TextDecoder().decode(payload);
              if (text === 'bad') throw Object.assign(new Error('bad can never work'), {permanent: true});
              throw new Error('not now');
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
            var delivery = TriggerDelivery()
            delivery.maxDeliver = 3
            delivery.deadLetterSubject = "dlq.jobs"
            _ = try await h.deploy(
                file: file, name: "picky", type: "v8",
                triggerList: [.stream(StreamTrigger(stream: "JOBS", filterSubject: "js.>", delivery: delivery))])
            let wasm = TestEnvironment.packageRoot.appendingPathComponent("examples/wasm/limits.wasm").path
            _ = try await h.deploy(
                file: wasm, name: "limits", type: "wasm",
                triggerList: [.stream(StreamTrigger(stream: "JOBS", filterSubject: "w.>", delivery: delivery))])

            _ = try await js.publish(Array("bad".utf8), to: "js.one")
            _ = try await js.publish(Array("later".utf8), to: "js.two")
            _ = try await js.publish([], to: "w.bad")
            _ = try await js.publish([], to: "w.fail")
            try await eventually("four dead letters", timeout: .seconds(30)) {
                try await js.streamInfo("DEAD").state.messages == 4
            }
            var letters: [String: NATSHeaders] = [:]
            for sequence in 1...4 {
                let dead = try await js.getMessage(stream: "DEAD", sequence: UInt64(sequence))
                letters[dead.headers?["Nex-Dead-Letter-Sequence"] ?? "?"] = dead.headers ?? NATSHeaders()
            }
            #expect(letters["1"]?["Nex-Dead-Letter-Deliveries"] == "1")
            #expect(letters["1"]?["Nex-Dead-Letter-Error"]?.contains("bad can never work") == true)
            #expect(letters["2"]?["Nex-Dead-Letter-Deliveries"] == "3")
            #expect(letters["3"]?["Nex-Dead-Letter-Deliveries"] == "1")
            #expect(letters["3"]?["Nex-Dead-Letter-Error"]?.contains("exited with code 65") == true)
            #expect(letters["4"]?["Nex-Dead-Letter-Deliveries"] == "3")
            #expect(letters["4"]?["Nex-Dead-Letter-Error"]?.contains("exited with code 3") == true)
            // Counted once the termination is sent, just after the dead letter is stored.
            try await eventually("the dead letters counted") {
                await metricValue(h.node, "nex_trigger_dead_lettered_total", #"workload="picky""#) == 2
            }
            #expect(await metricValue(h.node, "nex_trigger_retried_total", #"workload="picky""#) == 2)
        }
    }

    /// A message whose last delivery never finishes (its node died holding it) is given up by the server; one
    /// of the nodes that run the trigger dead-letters it from the server's advisory, once. The test plays the
    /// node that dies: it takes the message, keeps it in progress while the copies start, then goes silent.
    @Test func aLastAttemptThatNeverFinishesIsDeadLetteredFromTheAdvisory() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "JOBS", subjects: ["jobs.>"]))
            try await deadLetterStream(js, subject: "dlq.jobs")
            let dead = try await MessageRecorder(h.client, subject: "dlq.jobs")
            let done = try await MessageRecorder(h.client, subject: "done.>")
            var delivery = TriggerDelivery()
            delivery.maxDeliver = 1
            // Long enough that the holder below (a progress report every 250 ms) cannot miss it on a loaded
            // machine: a run whose 2 s ran out before the copies subscribed to the advisory never saw it.
            delivery.ackWait = "6s"
            delivery.deadLetterSubject = "dlq.jobs"
            let trigger = WorkloadTrigger.stream(StreamTrigger(stream: "JOBS", delivery: delivery))
            // The test plays the node that dies: it takes the message on the shared consumer and never answers.
            let plan = try #require(JetStreamTriggerPlan(trigger, index: 0, namespace: "default", name: "jobs"))
            let consumer = try await js.createOrUpdateConsumer(stream: "JOBS", config: plan.consumer)
            _ = try await js.publish(Array("lost".utf8), to: "jobs.one")
            let taken = try await consumer.fetch(1, expires: .seconds(5))
            #expect(taken.count == 1)

            let file = try reportingFunction(in: h.server)
            try await withSecondNode(h) { second in
                // Held in progress until both copies run (the server says it gave a message up only once).
                let holding = Task {
                    while true {
                        try await taken[0].inProgress()
                        try await Task.sleep(for: .milliseconds(250))
                    }
                }
                _ = try await h.deploy(file: file, name: "jobs", type: "v8", triggerList: [trigger])
                _ = try await deployCopy(h, on: second, file: file, name: "jobs", type: "v8", triggers: [trigger])
                holding.cancel()
                _ = await holding.result
                try await eventually("the dead letter", timeout: .seconds(30)) {
                    try await js.streamInfo("DEAD").state.messages == 1
                }
                let letter = try await js.getMessage(stream: "DEAD", sequence: 1)
                #expect(String(decoding: letter.payload, as: UTF8.self) == "lost")
                #expect(letter.headers?["Nex-Dead-Letter-Deliveries"] == "1")
                #expect(letter.headers?["Nex-Dead-Letter-Error"]?.contains("did not finish") == true)
                // A message after it runs as usual, and the lost one never ran.
                _ = try await js.publish(Array("next".utf8), to: "jobs.two")
                try await eventually("the next message") { done.messages.count == 1 }
                #expect(done.messages.map(\.subject) == ["done.jobs.two"])
                // One node acted on the advisory (a queue group), so one dead letter was even sent.
                #expect(dead.messages.count == 1)
            }
        }
    }

    /// Two nodes that run one stream trigger share its consumer: every message is done once, both nodes
    /// work, and INFO shows the trigger with its consumer's counts.
    @Test func twoNodesShareOneStreamTrigger() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "SHARED", subjects: ["shared.>"]))
            let done = try await MessageRecorder(h.client, subject: "done.>")
            // Each message takes a few milliseconds, so one node alone cannot take them all before the other pulls.
            let file = h.server.directory.appendingPathComponent("slow.js").path
            try """
            (subject, payload) => {
              const until = Date.now() + 5;
              while (Date.now() < until) {}
              this.hostServices.messaging.publish('done.' + new TextDecoder().decode(payload), payload);
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
            var delivery = TriggerDelivery()
            delivery.maxBatch = 4
            delivery.maxConcurrency = 2
            let trigger = WorkloadTrigger.stream(StreamTrigger(stream: "SHARED", delivery: delivery))
            try await withSecondNode(h) { second in
                _ = try await h.deploy(file: file, name: "shared", type: "v8", triggerList: [trigger])
                _ = try await deployCopy(h, on: second, file: file, name: "shared", type: "v8", triggers: [trigger])
                for n in 0..<200 { _ = try await js.publish(Array("\(n)".utf8), to: "shared.item") }
                let durable = JetStreamTriggerPlan.durableName(namespace: "default", name: "shared", index: 0)
                try await eventually("every message acknowledged", timeout: .seconds(60)) {
                    let info = try await js.consumerInfo(stream: "SHARED", name: durable)
                    return info.ackFloor.streamSequence == 200 && info.pendingAcks == 0
                }
                // The reports travel on the functions' own connections: the last may come after its ack.
                try await eventually("every report") { done.messages.count >= 200 }
                let handled = done.messages.map(\.subject)
                #expect(handled.count == 200 && Set(handled).count == 200, "\(handled.count) done")
                // Counted once each ack is confirmed, just after the server took it.
                try await eventually("every ack counted") {
                    let first = await metricValue(h.node, "nex_trigger_acked_total", #"workload="shared""#)
                    return await first + metricValue(second, "nex_trigger_acked_total", #"workload="shared""#) == 200
                }
                let first = await metricValue(h.node, "nex_trigger_acked_total", #"workload="shared""#)
                let other = await metricValue(second, "nex_trigger_acked_total", #"workload="shared""#)
                #expect(first > 0 && other > 0, "acked \(first) and \(other)")
                #expect(await metricValue(h.node, "nex_trigger_delivered_total", #"workload="shared""#) == first)

                let info = try await h.nex.info(node: h.node.nodeID)
                let status = try #require(info.machines.first?.workload.triggers?.first)
                #expect(status.type == "stream" && status.source == "SHARED" && status.consumer == durable)
                #expect(status.pending == 0 && status.ackPending == 0 && status.redelivered == 0)
            }
        }
    }

    /// An object-store watch runs the function for each put and delete of an object, with the object's name
    /// and the operation in `ctx`.
    @Test func anObjectStoreWatchSeesPutsAndDeletes() async throws {
        try await withNode({
            $0.workloadTypes = [.native, .v8]
            $0.subjectPolicy.allowReserved = ["$O.uploads.>"]  // the operator opens this one store
        }) { h in
            let js = JetStreamContext(client: h.client)
            let store = try await js.createObjectStore(ObjectStoreConfig(bucket: "uploads"))
            let done = try await MessageRecorder(h.client, subject: "done.>")
            let file = h.server.directory.appendingPathComponent("uploads.js").path
            try """
            (subject, payload, ctx) => {
              this.hostServices.messaging.publish(
                'done.' + ctx.operation + '.' + ctx.name + '.' + ctx.bucket, new Uint8Array(0));
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
            _ = try await h.deploy(
                file: file, name: "uploads", type: "v8",
                triggerList: [.objectStore(ObjectStoreTrigger(bucket: "uploads"))])
            try await store.put("report", data: Array(repeating: 7, count: 300_000))
            try await eventually("the put") { done.messages.count == 1 }
            try await store.delete("report")
            try await eventually("the delete") { done.messages.count == 2 }
            #expect(done.messages.map(\.subject) == ["done.put.report.uploads", "done.delete.report.uploads"])
        }
    }

    /// Malformed triggers are refused by a real node before anything is made: a five-field cron, a filter on a
    /// `$` subject, a backoff longer than `max_deliver - 1`; no consumer, no schedule stream, no workload.
    @Test func malformedTriggersAreRefusedAndNothingIsMade() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            _ = try await js.createStream(StreamConfig(name: "ORDERS", subjects: ["orders.>"]))
            let file = try reportingFunction(in: h.server)
            var tooLong = TriggerDelivery()
            tooLong.maxDeliver = 2
            tooLong.backoff = ["1s", "5s"]
            let cases: [(WorkloadTrigger, String)] = [
                (.schedule(ScheduleTrigger(cron: "*/5 * * * *")), "six fields, seconds first"),
                (.stream(StreamTrigger(stream: "ORDERS", filterSubject: "$JS.API.>")), "belong to NATS and Nex"),
                (.stream(StreamTrigger(stream: "ORDERS", delivery: tooLong)), "max_deliver 2 leaves 1"),
            ]
            for (trigger, says) in cases {
                let refused = await #expect(throws: NexError.self) {
                    try await h.deploy(file: file, name: "malformed", type: "v8", triggerList: [trigger])
                }
                #expect(refused?.message.contains(says) == true, "\(String(describing: refused))")
            }
            #expect(try await js.consumerNames(stream: "ORDERS").isEmpty)
            await #expect(throws: JetStreamError.self) { try await js.streamInfo(ScheduleStream.name) }
            #expect(try await h.nex.info(node: h.node.nodeID).machines.isEmpty)
        }
    }

    /// A work-queue stream lets one consumer read a subject: a trigger that would overlap the consumer already
    /// there is refused at deploy, with the fix, and nothing runs.
    @Test func aWorkQueueAnotherConsumerReadsIsRefused() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let js = JetStreamContext(client: h.client)
            var config = StreamConfig(name: "QUEUE", subjects: ["queue.>"])
            config.retention = .workqueue
            _ = try await js.createStream(config)
            _ = try await js.createOrUpdateConsumer(
                stream: "QUEUE", config: ConsumerConfig(durableName: "worker", ackPolicy: .explicit))
            let refused = await #expect(throws: NexError.self) {
                try await h.deploy(
                    file: try reportingFunction(in: h.server), name: "overlap", type: "v8",
                    triggerList: [.stream(StreamTrigger(stream: "QUEUE"))])
            }
            #expect(refused?.message.contains("is a work queue") == true, "\(String(describing: refused))")
            #expect(try await h.nex.info(node: h.node.nodeID).machines.isEmpty)
            #expect(try await js.consumerNames(stream: "QUEUE") == ["worker"])
        }
    }
}
