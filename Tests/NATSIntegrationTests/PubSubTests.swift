import Foundation
import NATS
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct PubSubTests {
    @Test func publishAndSubscribeWithWildcards() async throws {
        try await withServerAndClient { _, client in
            let star = try await client.subscribe(to: "orders.*.created")
            let full = try await client.subscribe(to: "orders.>")
            try await client.flush()
            try await client.publish("1", to: "orders.eu.created")
            try await client.publish("2", to: "orders.us.shipped.late")
            let a = try await star.collect(1)
            #expect(a.map(\.subject) == ["orders.eu.created"])
            #expect(a.first?.string == "1")
            let b = try await full.collect(2)
            #expect(b.map(\.string) == ["1", "2"])
        }
    }

    /// `client.statistics` counts as nats.go's `Statistics` does: messages and payload bytes each way.
    /// A timeout whose timer fires before the caller begins to wait (zero, or tiny on a busy machine) still
    /// ends the wait: it used to be lost, and the caller waited for ever.
    @Test func aZeroTimeoutNeverWaitsForEver() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "quiet")
            for _ in 0..<200 {
                let error = await #expect(throws: NATSError.self) { try await sub.nextMessage(timeout: .zero) }
                #expect(error?.code == .timeout)
            }
            try await client.publish("here", to: "quiet")
            #expect(try await sub.nextMessage(timeout: .seconds(5))?.string == "here")
        }
    }

    @Test func statisticsCountMessagesAndPayloadBytes() async throws {
        try await withServerAndClient { _, client in
            #expect(client.statistics == NATSStatistics())
            let sub = try await client.subscribe(to: "stats.>")
            try await client.flush()
            try await client.publish("abc", to: "stats.a")
            try await client.publish("defgh", to: "stats.b", headers: ["X": "header bytes do not count"])
            _ = try await sub.collect(2)
            let seen = client.statistics
            #expect(seen.outMessages == 2 && seen.outBytes == 8)
            #expect(seen.inMessages == 2 && seen.inBytes == 8)
            #expect(seen.reconnects == 0)
        }
    }

    @Test func asyncSequenceIterationEndsOnUnsubscribe() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "seq")
            try await client.flush()
            for i in 0..<100 { try await client.publish("\(i)", to: "seq") }
            try await client.flush()
            var got: [String] = []
            for try await m in sub {
                got.append(m.string)
                if got.count == 100 { try await sub.unsubscribe() }
            }
            #expect(got == (0..<100).map(String.init))
        }
    }

    @Test func callbackHandlerReceivesEveryMessage() async throws {
        try await withServerAndClient { _, client in
            let count = Locked(0)
            try await client.subscribe(to: "cb.>") { _ in count.withLock { $0 += 1 } }
            try await client.flush()
            for _ in 0..<500 { try await client.publish([1, 2, 3], to: "cb.x") }
            try await eventually("500 callbacks") { count.withLock { $0 } == 500 }
        }
    }

    @Test func queueGroupsShareTheLoad() async throws {
        try await withServerAndClient { _, client in
            let a = try await client.subscribe(to: "work", queue: "workers")
            let b = try await client.subscribe(to: "work", queue: "workers")
            try await client.flush()
            for i in 0..<200 { try await client.publish("\(i)", to: "work") }
            try await client.flush()
            try await eventually("all 200 delivered once") { a.pendingMessages + b.pendingMessages == 200 }
            #expect(a.pendingMessages > 0 && b.pendingMessages > 0)
        }
    }

    @Test func autoUnsubscribeAfterN() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "limited")
            try await sub.unsubscribe(afterMessages: 3)
            try await client.flush()
            for i in 0..<10 { try await client.publish("\(i)", to: "limited") }
            var got: [String] = []
            for try await m in sub { got.append(m.string) }
            #expect(got == ["0", "1", "2"])
        }
    }

    @Test func headersRoundTripMultiValuedAndCasePreserving() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "h")
            try await client.flush()
            var headers = NATSHeaders()
            headers.append("X-Trace", "a")
            headers.append("X-Trace", "b")
            headers.append("lower-case", "kept")
            try await client.publish("body", to: "h", headers: headers)
            let m = try #require(try await sub.collect(1).first)
            #expect(m.headers?.values(for: "X-Trace") == ["a", "b"])
            #expect(m.headers?["lower-case"] == "kept")
            #expect(m.string == "body")
        }
    }

    @Test func echoCanBeTurnedOff() async throws {
        try await NATSServer.with { server in
            try await withClient([server.url], configure: { $0.echo = false }) { quiet in
                let sub = try await quiet.subscribe(to: "echo")
                try await quiet.flush()
                try await quiet.publish("mine", to: "echo")
                try await withClient([server.url]) { other in try await other.publish("theirs", to: "echo") }
                let got = try await sub.collect(1)
                #expect(got.map(\.string) == ["theirs"])
            }
        }
    }

    @Test func subscriptionDrainDeliversInFlightMessages() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "drain.me")
            try await client.flush()
            for i in 0..<1000 { try await client.publish("\(i)", to: "drain.me") }
            try await sub.drain()
            var n = 0
            for try await _ in sub { n += 1 }
            #expect(n == 1000)
            try await client.publish("late", to: "drain.me")
            try await client.flush()
            #expect(sub.pendingMessages == 0)
        }
    }

    @Test func connectionDrainFlushesAndCloses() async throws {
        try await NATSServer.with { server in
            try await withClient([server.url]) { observer in
                let sub = try await observer.subscribe(to: "bye")
                try await observer.flush()
                let client = NATSClient(configuration: testConfig([server.url]))
                try await client.connect()
                let own = try await client.subscribe(to: "own")
                for i in 0..<500 { try await client.publish("\(i)", to: "bye") }
                try await client.drain()
                #expect(!client.isConnected)
                var ended = true
                for try await _ in own { ended = false }
                #expect(ended)
                #expect(try await sub.collect(500).count == 500)
                await #expect(throws: NATSError.self) { try await client.publish("x", to: "bye") }
            }
        }
    }

    @Test func verboseAndPedanticModesWork() async throws {
        try await withServerAndClient(configure: {
            $0.verbose = true
            $0.pedantic = true
        }) { _, client in
            let sub = try await client.subscribe(to: "strict.>")
            try await client.publish("ok", to: "strict.a")
            #expect(try await sub.collect(1).first?.string == "ok")
            try await client.subscribe(to: "strict.svc") { m in try await m.respond(m.bytes, using: client) }
            try await client.flush()
            #expect(try await client.request("r", to: "strict.svc").string == "r")
        }
    }

    @Test func serverInfoIsExposed() async throws {
        try await withServerAndClient { _, client in
            let info = try #require(client.serverInfo)
            #expect(info.version == "2.15.1")
            #expect(info.supportsHeaders)
            #expect(info.maxPayload == 1 << 20)
            #expect(client.connectedServer?.hasPrefix("nats://127.0.0.1:") == true)
        }
    }

    /// Drain returns only after the handler has handled every message it took: a handler takes a whole batch
    /// at once, so the buffer is empty long before (drain used to close the connection then).
    @Test func drainWaitsForTheHandlerToFinishItsBatch() async throws {
        try await withServerAndClient { _, client in
            let handled = Locked(0)
            try await client.subscribe(to: "slow.work") { _ in
                try await Task.sleep(for: .milliseconds(20))
                handled.withLock { $0 += 1 }
            }
            try await client.flush()
            for i in 0..<20 { try await client.publish("\(i)", to: "slow.work") }
            try await client.drain()
            #expect(handled.value == 20)
        }
    }

    /// Two tasks consuming one subscription: the second is refused with a typed error; the first keeps
    /// waiting and gets the message (the second used to replace the first's wait, which then never ended).
    @Test func aSecondConsumerIsRefusedAndTheFirstKeepsItsWait() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "shared.one")
            try await client.flush()
            let outcomes = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        do {
                            var iterator = sub.makeAsyncIterator()
                            return try await iterator.next()?.string ?? "ended"
                        } catch let error as NATSError where error.code == .alreadyConsumed {
                            return "refused"
                        }
                    }
                }
                var outcomes = [try await group.next() ?? ""]
                try await client.publish("hello", to: "shared.one")
                outcomes.append(try await group.next() ?? "")
                return outcomes
            }
            #expect(outcomes == ["refused", "hello"])
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct BadInputTests {
    @Test func invalidSubjectsAreTypedErrors() async throws {
        try await withServerAndClient { _, client in
            for bad in ["", "a b", "a..b", "wild.*", "trail."] {
                await #expect(throws: NATSError.self) { try await client.publish("x", to: bad) }
            }
            await #expect(throws: NATSError.self) { try await client.subscribe(to: "a.>.b") }
            await #expect(throws: NATSError.self) { try await client.subscribe(to: "ok", queue: "bad queue") }
            await #expect(throws: NATSError.self) { try await client.publish("x", to: "ok", replyTo: "bad reply") }
            // The connection is still fine.
            let r = try await client.subscribe(to: "still.ok")
            try await client.publish("yes", to: "still.ok")
            #expect(try await r.collect(1).first?.string == "yes")
        }
    }

    @Test func oversizePayloadIsRejectedBeforeSending() async throws {
        try await withServerAndClient(.init(config: "max_payload: 1024")) { _, client in
            let error = await #expect(throws: NATSError.self) {
                try await client.publish([UInt8](repeating: 1, count: 2000), to: "big")
            }
            #expect(error?.code == .payloadTooLarge)
            try await client.publish([UInt8](repeating: 1, count: 1000), to: "fits")
            try await client.flush()
            #expect(client.isConnected)
        }
    }

    @Test func invalidHeadersAreTypedErrors() async throws {
        try await withServerAndClient { _, client in
            let error = await #expect(throws: NATSError.self) {
                try await client.publish("x", to: "h", headers: ["Bad Name": "v"])
            }
            #expect(error?.code == .invalidHeaders)
        }
    }

    @Test func permissionViolationsAreTypedEvents() async throws {
        let config = """
            authorization { timeout: 10, users = [ { user: "u", password: "p", permissions: { publish: { deny: ["secret.>"] }, subscribe: { deny: ["hidden"] } } } ] }
            """
        try await withServerAndClient(
            .init(config: config), configure: { $0.auth = .userPassword(user: "u", password: "p") }
        ) {
            _, client in
            let events = EventRecorder(client)
            try await client.publish("x", to: "secret.plans")
            try await events.waitFor("publish violation") {
                if case .error(let e) = $0 { return e.code == .permissionViolation && e.subject == "secret.plans" }
                return false
            }
            let sub = try await client.subscribe(to: "hidden")
            let error = await #expect(throws: NATSError.self) { for try await _ in sub {} }
            #expect(error?.code == .permissionViolation)
            #expect(client.isConnected)
        }
    }

    @Test func slowConsumerIsReportedNotSilent() async throws {
        try await withServerAndClient { _, client in
            let events = EventRecorder(client)
            let sub = try await client.subscribe(to: "firehose")
            sub.setPendingLimits(messages: 10, bytes: 1 << 20)
            try await client.flush()
            for _ in 0..<100 { try await client.publish("x", to: "firehose") }
            try await client.flush()
            try await eventually("drops counted") { sub.droppedMessages == 90 }
            try await events.waitFor("slow consumer event") {
                if case .slowConsumer(let subject, _, _) = $0 { return subject == "firehose" }
                return false
            }
            #expect(try await sub.collect(10).count == 10)
        }
    }

    @Test func connectingToNothingIsATypedError() async throws {
        let client = NATSClient(configuration: .init(servers: ["nats://127.0.0.1:1"]))
        let error = await #expect(throws: NATSError.self) { try await client.connect() }
        #expect(error?.code == .noServers)
        await #expect(throws: NATSError.self) { try await client.publish("x", to: "y") }
    }

    @Test func badURLIsATypedError() async throws {
        let client = NATSClient(configuration: .init(servers: ["http://example.com"]))
        let error = await #expect(throws: NATSError.self) { try await client.connect() }
        #expect(error?.code == .invalidURL)
    }
}
