import NATS
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct RequestReplyTests {
    @Test func requestGetsTheReply() async throws {
        try await withServerAndClient { _, client in
            try await client.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: client) }
            try await client.flush()
            for i in 0..<50 {
                let reply = try await client.request("ping \(i)", to: "svc.echo")
                #expect(reply.string == "ping \(i)")
            }
        }
    }

    @Test func concurrentRequestsShareOneInbox() async throws {
        try await withServerAndClient { _, client in
            try await client.subscribe(to: "svc.double") { m in
                try await m.respond(Array(String(Int(m.string)! * 2).utf8), using: client)
            }
            try await client.flush()
            let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for i in 0..<200 {
                    group.addTask { (i, try await client.request("\(i)", to: "svc.double").string) }
                }
                return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
            }
            #expect(results.count == 200)
            #expect(results.allSatisfy { $0.value == String($0.key * 2) })
        }
    }

    /// A request made by a task that is already cancelled throws `cancelled` at once: the cancellation
    /// handler runs before the request's token is registered, so the request itself must look (it used to wait
    /// out its whole timeout).
    @Test func aCancelledTaskFailsItsRequestAtOnce() async throws {
        try await withServerAndClient { _, client in
            let silent = try await client.subscribe(to: "svc.silent")  // a responder that never answers
            try await client.flush()
            let start = ContinuousClock.now
            let request = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await client.request("x", to: "svc.silent", timeout: .seconds(30))
            }
            let error = await #expect(throws: NATSError.self) { try await request.value }
            #expect(error?.code == .cancelled)
            #expect(ContinuousClock.now - start < .seconds(5))
            try await silent.unsubscribe()
        }
    }

    /// The same for a subscription's `nextMessage`: a cancelled task's wait ends at once, with no message (it
    /// used to wait out its timeout).
    @Test func aCancelledTaskStopsWaitingForMessagesAtOnce() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "quiet")
            let start = ContinuousClock.now
            let waiting = Task { () -> NATSMessage? in
                withUnsafeCurrentTask { $0?.cancel() }
                return try await sub.nextMessage(timeout: .seconds(30))
            }
            #expect(try await waiting.value == nil)
            #expect(ContinuousClock.now - start < .seconds(5))
            try await sub.unsubscribe()
        }
    }

    @Test func noRespondersIsATypedErrorAtOnce() async throws {
        try await withServerAndClient { _, client in
            let start = ContinuousClock.now
            let error = await #expect(throws: NATSError.self) {
                try await client.request("x", to: "nobody.home", timeout: .seconds(60))
            }
            #expect(error?.code == .noResponders)
            #expect(ContinuousClock.now - start < .seconds(20))  // at once, not after the 60 s timeout
        }
    }

    @Test func silentResponderTimesOut() async throws {
        try await withServerAndClient { _, client in
            let sub = try await client.subscribe(to: "svc.silent")
            try await client.flush()
            let error = await #expect(throws: NATSError.self) {
                try await client.request("x", to: "svc.silent", timeout: .milliseconds(200))
            }
            #expect(error?.code == .timeout)
            #expect(sub.pendingMessages == 1)
            // A late reply to a timed-out request is ignored, and the next request still works.
            try await client.subscribe(to: "svc.ok") { m in try await m.respond(Array("ok".utf8), using: client) }
            try await client.flush()
            #expect(try await client.request("x", to: "svc.ok").string == "ok")
        }
    }

    @Test func requestHeadersReachTheResponder() async throws {
        try await withServerAndClient { _, client in
            try await client.subscribe(to: "svc.hdr") { m in
                var h = NATSHeaders()
                h["Echo"] = m.headers?["Ask"] ?? "none"
                try await m.respond([UInt8](), headers: h, using: client)
            }
            try await client.flush()
            let reply = try await client.request("", to: "svc.hdr", headers: ["Ask": "value 1"])
            #expect(reply.headers?["Echo"] == "value 1")
        }
    }

    @Test func customInboxPrefix() async throws {
        try await withServerAndClient(configure: { $0.inboxPrefix = "_MY.replies" }) { _, client in
            try await client.subscribe(to: "svc.who") { m in
                try await m.respond(Array((m.replyTo ?? "").utf8), using: client)
            }
            try await client.flush()
            let reply = try await client.request("", to: "svc.who")
            #expect(reply.string.hasPrefix("_MY.replies."))
        }
    }

    @Test func requestManyStopsAtMaxStallOrTimeout() async throws {
        try await withServerAndClient { _, client in
            for i in 0..<3 {
                try await client.subscribe(to: "svc.all") { m in try await m.respond(Array("r\(i)".utf8), using: client)
                }
            }
            try await client.flush()
            let two = try await client.requestMany([], to: "svc.all", maxReplies: 2)
            #expect(two.count == 2)
            let start = ContinuousClock.now
            let all = try await client.requestMany([], to: "svc.all", stall: .milliseconds(200), timeout: .seconds(60))
            #expect(Set(all.map(\.string)) == ["r0", "r1", "r2"])
            #expect(ContinuousClock.now - start < .seconds(20))  // ended by the stall, not the 60 s timeout
            let error = await #expect(throws: NATSError.self) {
                try await client.requestMany([], to: "svc.none", timeout: .seconds(1))
            }
            #expect(error?.code == .noResponders)
        }
    }

    @Test func cancelledRequestThrowsPromptly() async throws {
        try await withServerAndClient { _, client in
            _ = try await client.subscribe(to: "svc.slow")
            try await client.flush()
            let task = Task { try await client.request("x", to: "svc.slow", timeout: .seconds(30)) }
            try await Task.sleep(for: .milliseconds(100))
            task.cancel()
            let error = await #expect(throws: NATSError.self) { try await task.value }
            #expect(error?.code == .cancelled)
        }
    }
}
