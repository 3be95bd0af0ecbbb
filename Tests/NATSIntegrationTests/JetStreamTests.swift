import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A server with JetStream and a connected client.
func withJetStream<T>(
    _ body: (NATSServer, NATSClient, JetStreamContext) async throws -> T
) async throws -> T {
    try await withServerAndClient(.init(jetStream: true)) { server, client in
        try await body(server, client, JetStreamContext(client: client))
    }
}

@Suite(.timeLimit(.minutes(2))) struct JetStreamStreamTests {
    @Test func streamLifecycle() async throws {
        try await withJetStream { _, _, js in
            var config = StreamConfig(name: "ORDERS", subjects: ["orders.>"])
            config.maxAge = .seconds(3600)
            let created = try await js.createStream(config)
            #expect(created.config.name == "ORDERS" && created.config.maxAge == .seconds(3600))
            #expect(created.state.messages == 0)
            config.description = "all orders"
            #expect(try await js.updateStream(config).config.description == "all orders")
            _ = try await js.createStream(StreamConfig(name: "OTHER", subjects: ["other.>"]))
            #expect(Set(try await js.streamNames()) == ["ORDERS", "OTHER"])
            #expect(try await js.streamNames(subject: "orders.new") == ["ORDERS"])
            #expect(try await js.streams().count == 2)
            try await js.deleteStream("OTHER")
            let error = await #expect(throws: JetStreamError.self) { try await js.streamInfo("OTHER") }
            #expect(error?.errorCode == JetStreamError.Known.streamNotFound && error?.code == 404)
            await #expect(throws: JetStreamError.self) { try await js.streamInfo("bad.name") }
        }
    }

    @Test func jetStreamDomainsUseTheirOwnAPIPrefix() async throws {
        try await NATSServer.with(.init(jetStream: true, config: "jetstream { domain: hub }")) { server in
            try await withClient([server.url]) { client in
                let js = JetStreamContext(client: client, domain: "hub")
                #expect(js.apiPrefix == "$JS.hub.API")
                #expect(try await js.accountInfo().domain == "hub")
                _ = try await js.createStream(StreamConfig(name: "D", subjects: ["d.>"]))
                #expect(try await js.publish("x", to: "d.1").domain == "hub")
                let wrong = JetStreamContext(client: client, domain: "elsewhere")
                let error = await #expect(throws: JetStreamError.self) { try await wrong.accountInfo() }
                #expect(error?.code == 503)
            }
        }
    }

    @Test func publishWithAckDedupeAndExpectations() async throws {
        try await withJetStream { _, _, js in
            var config = StreamConfig(name: "EV", subjects: ["ev.>"])
            config.duplicateWindow = .seconds(60)
            _ = try await js.createStream(config)
            let a = try await js.publish("one", to: "ev.a", options: .init(messageID: "m1"))
            #expect(a.stream == "EV" && a.sequence == 1 && a.duplicate != true)
            let again = try await js.publish("one", to: "ev.a", options: .init(messageID: "m1"))
            #expect(again.sequence == 1 && again.duplicate == true)
            _ = try await js.publish("two", to: "ev.b", options: .init(expectedLastSequence: 1))
            let wrong = await #expect(throws: JetStreamError.self) {
                try await js.publish("x", to: "ev.a", options: .init(expectedLastSubjectSequence: 7))
            }
            #expect(wrong?.errorCode == JetStreamError.Known.wrongLastSequence)
            #expect(try await js.streamInfo("EV").state.messages == 2)
            // Nothing listens: a typed error after the retries, not a hang.
            let none = await #expect(throws: JetStreamError.self) { try await js.publish("x", to: "nowhere.at.all") }
            #expect(none?.code == 503)
        }
    }

    @Test func asyncPublishingWithAWindow() async throws {
        try await withJetStream { _, _, js in
            _ = try await js.createStream(StreamConfig(name: "FAST", subjects: ["fast.>"]))
            let publisher = try await JetStreamAsyncPublisher(js: js, maxPending: 64)
            for i in 0..<5000 { try await publisher.publish(Array("m\(i)".utf8), to: "fast.in") }
            // Two that the stream refuses: expected last subject sequence is wrong.
            for _ in 0..<2 {
                try await publisher.publish([1], to: "fast.in", options: .init(expectedLastSubjectSequence: 1))
            }
            let summary = await publisher.waitForCompletion()
            #expect(summary.acknowledged == 5000 && summary.outstanding == 0)
            #expect(summary.failures.count == 2)
            #expect(summary.failures.allSatisfy { $0.errorCode == JetStreamError.Known.wrongLastSequence })
            #expect(try await js.streamInfo("FAST").state.messages == 5000)
            await publisher.close()
        }
    }

    @Test func getMessagesByApiAndDirect() async throws {
        try await withJetStream { _, _, js in
            var config = StreamConfig(name: "KVLIKE", subjects: ["k.>"])
            config.allowDirect = true
            _ = try await js.createStream(config)
            _ = try await js.publish("v1", to: "k.a", headers: ["X-Kind": "first"])
            _ = try await js.publish("v2", to: "k.a")
            _ = try await js.publish("b1", to: "k.b")
            let bySeq = try await js.getMessage(stream: "KVLIKE", sequence: 1)
            #expect(bySeq.subject == "k.a" && String(decoding: bySeq.payload, as: UTF8.self) == "v1")
            #expect(bySeq.headers?["X-Kind"] == "first" && bySeq.time != nil)
            let last = try await js.getMessage(stream: "KVLIKE", lastOnSubject: "k.a")
            #expect(last.sequence == 2 && String(decoding: last.payload, as: UTF8.self) == "v2")
            let direct = try await js.directGet(stream: "KVLIKE", lastOnSubject: "k.b")
            #expect(direct.sequence == 3 && String(decoding: direct.payload, as: UTF8.self) == "b1")
            let directSeq = try await js.directGet(stream: "KVLIKE", sequence: 1)
            #expect(directSeq.headers?["X-Kind"] == "first")
            let missing = await #expect(throws: JetStreamError.self) {
                try await js.directGet(stream: "KVLIKE", lastOnSubject: "k.none")
            }
            #expect(missing?.code == 404)
            await #expect(throws: JetStreamError.self) { try await js.getMessage(stream: "KVLIKE", sequence: 99) }
            #expect(try await js.subjectCounts(stream: "KVLIKE", filter: "k.*") == ["k.a": 2, "k.b": 1])
            #expect(try await js.subjectCounts(stream: "KVLIKE", filter: "k.b") == ["k.b": 1])
            #expect(try await js.subjectCounts(stream: "KVLIKE", filter: "other.>").isEmpty)
            #expect(try await js.purgeStream("KVLIKE", subject: "k.a") == 2)
            #expect(try await js.streamInfo("KVLIKE").state.messages == 1)
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct JetStreamConsumerTests {
    @Test func pullFetchAckNakTerm() async throws {
        try await withJetStream { _, _, js in
            _ = try await js.createStream(StreamConfig(name: "JOBS", subjects: ["jobs.>"]))
            for i in 0..<5 { _ = try await js.publish("job \(i)", to: "jobs.new") }
            var config = ConsumerConfig(durableName: "workers")
            config.ackWait = .seconds(30)
            let consumer = try await js.createConsumer(stream: "JOBS", config: config)
            #expect(consumer.cachedInfo.config.ackWait == .seconds(30))
            let batch = try await consumer.fetch(3)
            #expect(batch.map(\.string) == ["job 0", "job 1", "job 2"])
            #expect(batch[0].metadata.stream == "JOBS" && batch[0].metadata.consumer == "workers")
            #expect(batch[0].metadata.streamSequence == 1 && batch[0].metadata.delivered == 1)
            #expect(batch[2].metadata.pending == 2)
            try await batch[0].ackSync()
            try await batch[1].nak()  // redelivered right away
            try await batch[2].term()  // never again
            let rest = try await consumer.fetch(10, expires: .seconds(1))
            #expect(Set(rest.map(\.string)) == ["job 1", "job 3", "job 4"])
            let redelivered = try #require(rest.first { $0.string == "job 1" })
            #expect(redelivered.metadata.delivered == 2)
            for m in rest { try await m.ack() }
            // Nothing left: noWait comes back empty at once.
            #expect(try await consumer.fetch(5, noWait: true).isEmpty)
            let info = try await consumer.info()
            #expect(info.pending == 0)
            #expect(try await js.consumerNames(stream: "JOBS") == ["workers"])
            try await js.deleteConsumer(stream: "JOBS", name: "workers")
            await #expect(throws: JetStreamError.self) { try await js.consumerInfo(stream: "JOBS", name: "workers") }
        }
    }

    @Test func fetchWaitsForLateMessagesAndExpires() async throws {
        try await withJetStream { _, _, js in
            _ = try await js.createStream(StreamConfig(name: "LATE", subjects: ["late"]))
            let consumer = try await js.createConsumer(stream: "LATE", config: ConsumerConfig(ackPolicy: .none))
            let start = ContinuousClock.now
            #expect(try await consumer.fetch(1, expires: .milliseconds(300)).isEmpty)
            #expect(ContinuousClock.now - start < .seconds(20))  // returned at expiry, did not hang
            Task {
                try await Task.sleep(for: .milliseconds(200))
                _ = try await js.publish("finally", to: "late")
            }
            #expect(try await consumer.fetch(1, expires: .seconds(5)).map(\.string) == ["finally"])
        }
    }

    @Test func continuousConsumeSurvivesAServerRestart() async throws {
        let server = try await NATSServer.start(.init(jetStream: true))
        var restarted: NATSServer?
        defer {
            server.stop()
            restarted?.stop()
        }
        try await withClient([server.url], configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
            let js = JetStreamContext(client: client)
            _ = try await js.createStream(StreamConfig(name: "FEED", subjects: ["feed"]))
            let consumer = try await js.createConsumer(stream: "FEED", config: ConsumerConfig(durableName: "reader"))
            for i in 0..<10 { _ = try await js.publish("\(i)", to: "feed") }
            // At-least-once: messages whose acks the restart lost come again, so count distinct payloads.
            let received = Locked<Set<String>>([])
            let reading = Task {
                for try await m in consumer.messages(batch: 4, expires: .seconds(1)) {
                    try await m.ack()
                    let n = received.withLock { r -> Int in
                        r.insert(m.string)
                        return r.count
                    }
                    if n == 20 { break }
                }
            }
            try await eventually("first ten") { received.value.count >= 10 }
            server.kill()
            restarted = try await server.restart()
            try await eventually("reconnected") { client.isConnected }
            // The restarted server may still be recovering its streams: retry until each publish is acked
            // (a retried one may be stored twice; the reader counts distinct payloads).
            for i in 10..<20 {
                _ = try await eventuallyValue("publish \(i) after the restart", timeout: .seconds(30)) {
                    try? await js.publish("\(i)", to: "feed")
                }
            }
            try await reading.value
            #expect(received.value == Set((0..<20).map(String.init)))
        }
    }

    /// `break` out of `for try await m in consumer.messages()` ends the pull session: its inbox subscription
    /// (and so its pulls) goes with the iterator (it used to stay subscribed for the connection's life).
    @Test func breakingOutOfMessagesEndsThePullSession() async throws {
        var options = NATSServer.Options(jetStream: true)
        options.arguments = ["-m", "-1"]
        try await withServerAndClient(options) { server, client in
            let js = JetStreamContext(client: client)
            _ = try await js.createStream(StreamConfig(name: "BRK", subjects: ["brk"]))
            let consumer = try await js.createConsumer(stream: "BRK", config: ConsumerConfig(ackPolicy: .none))
            for i in 0..<3 { _ = try await js.publish("\(i)", to: "brk") }
            /// The client's subscriptions as the server sees them: a pull session's inbox is `_INBOX.<nuid>`.
            func pullInboxes() throws -> [String] {
                let port = try #require(server.monitoringPort)
                let data = try Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/connz?subs=1")!)
                let connz = try JSONSerialization.jsonObject(with: data) as? [String: Any]
                let subs = (connz?["connections"] as? [[String: Any]] ?? []).flatMap {
                    $0["subscriptions_list"] as? [String] ?? []
                }
                return subs.filter { $0.hasPrefix("_INBOX.") && $0.split(separator: ".").count == 2 }
            }
            var seen = 0
            for try await _ in consumer.messages(batch: 10) {
                seen += 1
                if seen == 2 {
                    #expect(try pullInboxes().count == 1)
                    break
                }
            }
            try await client.flush()
            try await eventually("the pull inbox is unsubscribed") { try pullInboxes().isEmpty }
        }
    }
}
