import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

/// Message schedules (ADR-51), per-message TTLs and consumer advisories, against the real server.
@Suite(.timeLimit(.minutes(2))) struct JetStreamScheduleTests {
    /// A stream holding schedules on `sched.>` and their ticks on `fire.>`.
    func scheduleStream(_ js: JetStreamContext, ttl: Bool = false) async throws {
        var config = StreamConfig(name: "TICKS", subjects: ["sched.>", "fire.>"])
        config.allowMessageSchedules = true
        config.allowMessageTTL = ttl ? true : nil
        let info = try await js.createStream(config)
        #expect(info.config.allowMessageSchedules == true)
        #expect(info.config.allowRollup == true, "the server turns roll-ups on with schedules")
    }

    /// A consumer of one target's ticks.
    func ticks(_ js: JetStreamContext, of target: String) async throws -> Consumer {
        try await js.createConsumer(stream: "TICKS", config: ConsumerConfig(filterSubject: target))
    }

    @Test func anEveryScheduleFiresIntoItsTargetAndIsEnsuredOnce() async throws {
        try await withJetStream { _, _, js in
            try await scheduleStream(js)
            let schedule = MessageSchedule(.every(.seconds(1)), target: "fire.a", replacesEarlierTicks: true)
            let first = try await js.ensureSchedule(schedule, on: "sched.a", in: "TICKS", payload: Array("tick".utf8))
            guard case .published(let sequence) = first else {
                Issue.record("not published: \(first)")
                return
            }
            // The same schedule again: nothing published, so its timer is not restarted.
            let again = try await js.ensureSchedule(schedule, on: "sched.a", in: "TICKS", payload: Array("tick".utf8))
            #expect(again == .unchanged(sequence: sequence))
            // Another payload is a change.
            let changed = try await js.ensureSchedule(schedule, on: "sched.a", in: "TICKS", payload: Array("tock".utf8))
            guard case .published(let newer) = changed else {
                Issue.record("not republished: \(changed)")
                return
            }
            #expect(newer > sequence)

            let consumer = try await ticks(js, of: "fire.a")
            let tick = try #require(try await consumer.fetch(1, expires: .seconds(10)).first)
            #expect(tick.string == "tock")
            #expect(tick.headers?["Nats-Scheduler"] == "sched.a")
            #expect(tick.headers?["Nats-Schedule-Next"] != nil)
            #expect(tick.headers?["Nats-Schedule"] == nil, "schedule headers stay on the schedule")

            try await js.removeSchedule(on: "sched.a", in: "TICKS")
            let gone = await #expect(throws: JetStreamError.self) {
                try await js.getMessage(stream: "TICKS", lastOnSubject: "sched.a")
            }
            #expect(gone?.errorCode == JetStreamError.Known.noMessageFound)
        }
    }

    @Test func aSixFieldCronInATimeZoneFires() async throws {
        try await withJetStream { _, _, js in
            try await scheduleStream(js)
            let every = MessageSchedule(.cron("* * * * * *", timeZone: "UTC"), target: "fire.cron")
            try await js.publishSchedule(every, on: "sched.cron")
            let consumer = try await ticks(js, of: "fire.cron")
            let tick = try #require(try await consumer.fetch(1, expires: .seconds(10)).first)
            #expect(tick.headers?["Nats-Scheduler"] == "sched.cron")
        }
    }

    @Test func badSchedulesAreRefusedWithTheReason() async throws {
        let cases: [(MessageSchedule, String)] = [
            (MessageSchedule(.cron("*/5 * * * *"), target: "fire.x"), "six fields, seconds first"),
            (MessageSchedule(.every(.milliseconds(500)), target: "fire.x"), "at least 1s, not 500ms"),
            (MessageSchedule(.every(.seconds(1)), target: "fire.*"), "one literal subject"),
            (MessageSchedule(.cron("0 * * * * *", timeZone: ""), target: "fire.x"), "time zone is empty"),
        ]
        for (schedule, reason) in cases {
            let error = #expect(throws: JetStreamError.self) { try schedule.validate() }
            #expect(error?.description.contains(reason) == true, "\(String(describing: error))")
        }
        #expect(throws: Never.self) { try MessageSchedule(.cron("@hourly"), target: "fire.x").validate() }
        #expect(MessageSchedule(.every(.milliseconds(1500)), target: "a").headers["Nats-Schedule"] == "@every 1500ms")

        try await withJetStream { _, _, js in
            try await scheduleStream(js)
            // The server's own check: the target is outside the schedule's stream.
            let outside = await #expect(throws: JetStreamError.self) {
                try await js.publishSchedule(MessageSchedule(.every(.seconds(1)), target: "elsewhere"), on: "sched.x")
            }
            #expect(outside?.errorCode == 10190, "\(String(describing: outside))")
            // A stream without schedules refuses one.
            _ = try await js.createStream(StreamConfig(name: "PLAIN", subjects: ["plain.>"]))
            let disabled = await #expect(throws: JetStreamError.self) {
                try await js.publishSchedule(
                    MessageSchedule(.every(.seconds(1)), target: "plain.fire"), on: "plain.sched")
            }
            #expect(disabled?.errorCode == 10188, "\(String(describing: disabled))")
        }
    }

    @Test func aMessageWithATTLIsRemovedWhenItRunsOut() async throws {
        #expect(MessageTTL.after(.milliseconds(1500)).headerValue == "2s")
        #expect(MessageTTL.after(.milliseconds(10)).headerValue == "1s")
        #expect(MessageTTL.never.headerValue == "never")
        try await withJetStream { _, _, js in
            var config = StreamConfig(name: "SHORT", subjects: ["short.>"])
            config.allowMessageTTL = true
            _ = try await js.createStream(config)
            var options = PublishOptions()
            options.ttl = .after(.seconds(1))
            _ = try await js.publish(Array("brief".utf8), to: "short.a", options: options)
            _ = try await js.publish(Array("kept".utf8), to: "short.b")
            // The header is read from a message that outlives the test: a loaded machine can take longer than a
            // second to read the brief one back (a run read it after it was gone).
            options.ttl = .after(.seconds(3600))
            let long = try await js.publish(Array("long".utf8), to: "short.c", options: options)
            let stored = try await js.getMessage(stream: "SHORT", sequence: long.sequence)
            #expect(stored.headers?["Nats-TTL"] == MessageTTL.after(.seconds(3600)).headerValue)
            try await eventually("the message with a TTL is removed") {
                try await js.streamInfo("SHORT").state.messages == 2
            }
            #expect(try await js.getMessage(stream: "SHORT", lastOnSubject: "short.b").payload == Array("kept".utf8))
        }
    }

    /// A key created with a TTL of its own is gone when it runs out, and the bucket keeps a marker that reads
    /// as a purge (as a KV trigger sees it); a key without one stays. A bucket without per-key TTLs refuses one.
    @Test func aKeyWithATTLOfItsOwnRunsOut() async throws {
        try await withJetStream { _, _, js in
            var config = KeyValueConfig(bucket: "sessions", history: 3)
            config.limitMarkerTTL = .seconds(5)
            let kv = try await js.createKeyValue(config)
            #expect(try await js.streamInfo("KV_sessions").config.allowMessageTTL == true)
            try await kv.create("brief", Array("token".utf8), ttl: .seconds(2))
            // The server raises a key's TTL to the bucket's marker TTL at least.
            let stored = try await js.getMessage(stream: "KV_sessions", lastOnSubject: "$KV.sessions.brief")
            #expect(stored.headers?["Nats-TTL"] == "5", "\(String(describing: stored.headers))")
            try await kv.put("kept", Array("stays".utf8))
            #expect(try await kv.get("brief")?.value == Array("token".utf8))
            try await eventually("the key runs out", timeout: .seconds(20)) { try await kv.get("brief") == nil }
            let marker = try await js.getMessage(stream: "KV_sessions", lastOnSubject: "$KV.sessions.brief")
            #expect(KeyValueEntry.Operation(headers: marker.headers) == .purge, "\(String(describing: marker.headers))")
            #expect(try await kv.get("kept")?.value == Array("stays".utf8))
            // Created again once gone.
            try await kv.create("brief", Array("again".utf8), ttl: .seconds(30))

            let plain = try await js.createKeyValue(KeyValueConfig(bucket: "plain"))
            await #expect(throws: JetStreamError.self) { try await plain.create("k", [1], ttl: .seconds(5)) }
        }
    }

    @Test func terminatedAndGivenUpMessagesAreAdvised() async throws {
        try await withJetStream { _, client, js in
            _ = try await js.createStream(StreamConfig(name: "JOBS", subjects: ["jobs.>"]))
            // Two consumers: the terminated one has all the time it needs (a short ack wait could run out before
            // a loaded machine's term arrives); the other's one-second ack wait runs out on its only delivery.
            var config = ConsumerConfig(durableName: "once")
            config.maxDeliver = 1
            config.ackWait = .seconds(60)
            config.filterSubject = "jobs.a"
            let consumer = try await js.createConsumer(stream: "JOBS", config: config)
            var slowConfig = ConsumerConfig(durableName: "slow")
            slowConfig.maxDeliver = 1
            slowConfig.ackWait = .seconds(1)
            slowConfig.filterSubject = "jobs.b"
            let slowConsumer = try await js.createConsumer(stream: "JOBS", config: slowConfig)
            let terminated = try await client.subscribe(to: ConsumerAdvisory.terminatedSubject(stream: "JOBS"))
            let givenUp = try await client.subscribe(to: ConsumerAdvisory.maxDeliveriesSubject())
            try await client.flush()
            _ = try await js.publish(Array("poison".utf8), to: "jobs.a")
            _ = try await js.publish(Array("slow".utf8), to: "jobs.b")
            let batch = try await consumer.fetch(1, expires: .seconds(5))
            #expect(batch.map(\.string) == ["poison"])
            try await batch[0].term(reason: "bad input\nsecond line")
            let slow = try await slowConsumer.fetch(1, expires: .seconds(5))
            #expect(slow.map(\.string) == ["slow"])
            // Never acked: its ack wait runs out on its only delivery.

            let t = try #require(try await terminated.nextMessage(timeout: .seconds(10)))
            let term = try JSONDecoder().decode(ConsumerAdvisory.Terminated.self, from: Data(t.bytes))
            #expect(term.type == ConsumerAdvisory.Terminated.type)
            #expect(term.stream == "JOBS" && term.consumer == "once" && term.streamSequence == 1)
            #expect(term.reason == "bad input second line")
            let m = try #require(try await givenUp.nextMessage(timeout: .seconds(10)))
            let advisory = try JSONDecoder().decode(ConsumerAdvisory.MaxDeliveries.self, from: Data(m.bytes))
            #expect(advisory.type == ConsumerAdvisory.MaxDeliveries.type)
            #expect(advisory.stream == "JOBS" && advisory.consumer == "slow")
            #expect(advisory.streamSequence == 2 && advisory.deliveries == 1)
        }
    }

    @Test func keyValueOperationsReadFromTheBucketsStream() async throws {
        try await withJetStream { _, _, js in
            let kv = try await js.createKeyValue(KeyValueConfig(bucket: "settings", history: 5))
            _ = try await kv.put("feature.a", "on")
            try await kv.delete("feature.a")
            try await kv.purge("feature.a")
            let consumer = try await js.createConsumer(
                stream: "KV_settings", config: ConsumerConfig(filterSubject: "$KV.settings.feature.>"))
            let seen = try await consumer.fetch(3, noWait: true)
            // The purge rolls up the key's earlier revisions: only the purge marker is left.
            #expect(seen.map { KeyValueEntry.Operation(headers: $0.headers) } == [.purge], "\(seen.map(\.headers))")
            #expect(KeyValueEntry.Operation(headers: nil) == .put)
        }
    }
}
