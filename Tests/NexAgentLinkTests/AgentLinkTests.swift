import Foundation
import NIOPosix
import NexModels
import Synchronization
import Testing

@testable import NexAgentLink

@Suite(.timeLimit(.minutes(1))) struct LinkFrameTests {
    static let frames: [LinkFrame] = [
        .trigger(id: 1, subject: "fn.echo", payload: Array("hello".utf8)),
        .trigger(id: 2, subject: "orders.new", payload: [1, 2], context: Array(#"{"delivered":2}"#.utf8)),
        .trigger(
            id: 3, subject: "orders.new", payload: [],
            traceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            context: Array(#"{"stream":"ORDERS"}"#.utf8)),
        .trigger(id: UInt64.max, subject: "", payload: []),
        .trigger(
            id: 2, subject: "fn.traced", payload: [1, 2],
            traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        .result(id: 7, ok: true, elapsedNanos: 123_456, body: Array("reply".utf8)),
        .result(id: 8, ok: false, elapsedNanos: -1, body: []),
        .result(id: 9, ok: false, elapsedNanos: 5, body: Array("bad input".utf8), permanent: true),
        .log(level: 8, text: Array("oops: é".utf8)),
        .log(level: -4, text: []),
        .hello(AgentHandshake(id: "a1", version: "0.1.0", pid: 42, startupMillis: 1.5, protocolVersion: 2)),
        .welcome(AgentResponse(ok: false, message: "refused")),
        .deploy(
            id: 3,
            AgentDeployRequest(
                workloadID: "w", workloadName: "echo", namespace: "default", type: "v8", argv: ["a"],
                environment: ["K": "V"], essential: true, artifactPath: "/workload", totalBytes: 9,
                triggerSubjects: ["fn.>"], limits: FunctionLimits(), maxConcurrency: 2)),
        .stop(id: 4),
        .heartbeat(id: 5),
        .reply(id: 5, AgentResponse(ok: true, message: "w")),
        .hostCall(id: 6, .init(service: "kv", method: "get", arguments: Array(#"["k"]"#.utf8))),
        .hostCall(
            id: 7,
            .init(
                service: "http", method: "get", arguments: Array("[]".utf8),
                traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
        .hostAnswer(id: 6, ok: true, body: Array(#"{"v":1}"#.utf8)),
        .hostAnswer(id: 7, ok: false, body: Array("kv.get: no such key".utf8)),
        .exited(code: -9, message: "killed: é"),
    ]

    @Test(arguments: frames) func roundTripsAtEverySplit(_ frame: LinkFrame) throws {
        let bytes = frame.encoded()
        for cut in 0..<bytes.count {
            #expect(try LinkFrame.decode(bytes[0..<cut]) == nil)
        }
        let decoded = try #require(try LinkFrame.decode(bytes[...]))
        #expect(decoded.0 == frame && decoded.1 == bytes.count)
        // A frame followed by the start of another decodes alone.
        let two = bytes + bytes.prefix(3)
        #expect(try LinkFrame.decode(two[...])?.1 == bytes.count)
    }

    @Test(arguments: [
        [0, 0, 0, 1, 1] as [UInt8],  // shorter than a header
        [0xff, 0xff, 0xff, 0xff],  // larger than the limit
        [0, 0, 0, 9, 99, 0, 0, 0, 0, 0, 0, 0, 1],  // unknown kind
        [0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1],  // trigger without a subject length
        [0, 0, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 5],  // subject longer than the frame
        [0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 1],  // result without its fields
        [0, 0, 0, 9, 4, 0, 0, 0, 0, 0, 0, 0, 0],  // log line without its level
        [0, 0, 0, 10, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0],  // log line with an id
        [0, 0, 0, 11, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],  // traced trigger without a trace length
        [0, 0, 0, 12, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],  // traced trigger with an empty trace context
        [0, 0, 0, 12, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 5],  // trace context longer than the frame
        // Found by scripts/fuzz.sh (agentlink): a subject that is not UTF-8, and a result status other than 0, 1 or 2.
        [0, 0, 0, 14, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 0x66, 0xff, 0x6f],
        [0, 0, 0, 18, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 9, 8, 0, 0, 0, 0, 0, 0, 0, 0],  // a stop without an id
        [0, 0, 0, 10, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0],  // a stop with a body
        [0, 0, 0, 11, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x7d],  // a hello that is not an agent's handshake
        [0, 0, 0, 11, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0x7b, 0x7d],  // a hello with an id
        [0, 0, 0, 12, 11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],  // a host call without a service or method
        [0, 0, 0, 11, 11, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0x6b],  // a host call cut inside its service
        [0, 0, 0, 10, 12, 0, 0, 0, 0, 0, 0, 0, 1, 2],  // a host answer flag other than 0 or 1
        [0, 0, 0, 11, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  // an exit without its code
        [0, 0, 0, 14, 13, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff],  // an exit message that is not UTF-8
    ])
    func malformedFramesAreErrors(_ bytes: [UInt8]) {
        #expect(throws: LinkFrame.MalformedFrame.self) { try LinkFrame.decode(bytes[...]) }
    }

    /// A trigger without a trace context keeps the format of the first link protocol.
    @Test func anUntracedTriggerKeepsTheFirstFormat() throws {
        let bytes = LinkFrame.trigger(id: 1, subject: "s", payload: [9]).encoded()
        #expect(bytes == [0, 0, 0, 13, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0x73, 9])
        let oversized = LinkFrame.trigger(
            id: 1, subject: "s", payload: [9], traceParent: String(repeating: "x", count: 300))
        #expect(oversized.encoded() == bytes)
    }
}

@Suite(.timeLimit(.minutes(1))) struct AgentLinkTests {
    static let loop = MultiThreadedEventLoopGroup.singleton.next()
    /// An agent's first frame: the node takes nothing else before it.
    static let hello = LinkFrame.hello(
        AgentHandshake(id: "a1", version: "0.1.0", pid: 1, startupMillis: 1, protocolVersion: 2))

    /// A node end and an agent end over a real socketpair; the agent echoes with the subject appended.
    func withLink<T>(
        _ run: @escaping @Sendable (String, [UInt8], String?) -> AgentLinkServer.Outcome = { subject, payload, _ in
            .init(ok: true, elapsedNanos: 42, body: payload + Array(subject.utf8))
        }, _ body: (AgentLinkClient) async throws -> T
    ) async throws -> T {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        AgentLinkServer.serve(
            LinkSocket(fd: agentFD), run: { subject, payload, trace, _ in run(subject, payload, trace) },
            control: { _ in }, onEnd: { _ in }
        ).send(Self.hello)
        defer { client.close() }
        return try await body(client)
    }

    @Test func triggersAreAnsweredInOrderAndConcurrently() async throws {
        try await withLink { client in
            let reply = try await client.trigger(subject: "fn.a", payload: Array("x".utf8), timeout: .seconds(5))
            #expect(reply.ok && reply.elapsedNanos == 42 && reply.body == Array("xfn.a".utf8))
            let replies = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for i in 0..<200 {
                    group.addTask {
                        (
                            i,
                            try await client.trigger(subject: "s", payload: Array("\(i)".utf8), timeout: .seconds(5))
                                .body
                        )
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(replies.count == 200 && replies.allSatisfy { $0.value == Array("\($0.key)s".utf8) })
        }
    }

    /// Three workers and a burst of three triggers that each wait until all three run: a frame that arrives
    /// in the same read as another must reach an idle worker at once, not wait for a busy one. When the node's
    /// end closes, the end is reported and every worker leaves.
    @Test func aBurstRunsOnIdleWorkersAtOnceAndTheEndIsReported() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        let barrier = Barrier(parties: 3)
        let (ends, ended) = AsyncStream.makeStream(of: String.self)
        weak var served: AgentLinkServer?
        do {
            let server = AgentLinkServer.serve(
                LinkSocket(fd: agentFD),
                run: { _, payload, _, _ in .init(ok: barrier.arriveAndWait(), elapsedNanos: 0, body: payload) },
                control: { _ in }, onEnd: { ended.yield($0) })
            server.growWorkers(to: 3)
            server.send(Self.hello)
            served = server
        }
        for round in 0..<3 {
            barrier.reset()
            let oks = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<3 {
                    group.addTask {
                        try await client.trigger(subject: "s", payload: [UInt8(i)], timeout: .seconds(20)).ok
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(oks == [true, true, true], "round \(round): the burst did not run at once")
        }
        client.close()
        var reasons = ends.makeAsyncIterator()
        #expect(await reasons.next() != nil)
        // Every worker leaves (each passes the end on to the next); the last one lets the server go.
        let deadline = ContinuousClock.now + .seconds(10)
        while served != nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(served == nil, "a link worker is still waiting after the link ended")
    }

    /// Runs wait here until `parties` have arrived (true), or 10 s pass (false).
    final class Barrier: @unchecked Sendable {
        // @unchecked: `arrived` is guarded by `condition`.
        private let condition = NSCondition()
        private var arrived = 0
        let parties: Int
        init(parties: Int) { self.parties = parties }

        func reset() {
            condition.lock()
            arrived = 0
            condition.unlock()
        }

        func arriveAndWait() -> Bool {
            condition.lock()
            defer { condition.unlock() }
            arrived += 1
            condition.broadcast()
            let deadline = Date().addingTimeInterval(10)
            while arrived < parties, condition.wait(until: deadline) {}
            return arrived >= parties
        }
    }

    @Test func largePayloadsCrossWhole() async throws {
        // Far more than a socket buffer: the node's loop writes as the socket drains, and the agent's
        // non-blocking write leaves the rest of each result to its writer thread.
        let big = [UInt8]((0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0) })
        try await withLink { client in
            async let a = client.trigger(subject: "a", payload: big, timeout: .seconds(20))
            async let b = client.trigger(subject: "b", payload: big, timeout: .seconds(20))
            let (ra, rb) = try await (a, b)
            #expect(ra.body == big + Array("a".utf8) && rb.body == big + Array("b".utf8))
        }
    }

    /// A link whose agent side runs `logging` with its own server (to send log lines) before echoing the
    /// payload; `body` gets the node's end and the lines the node read, as (level, text).
    func withLoggingLink(
        _ logging: @escaping @Sendable (AgentLinkServer?) -> Void,
        _ body: (AgentLinkClient, borrowing Mutex<[(Int, [UInt8])]>) async throws -> Void
    ) async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let seen = Mutex<[(Int, [UInt8])]>([])
        let client = try await AgentLinkClient.start(
            descriptor: nodeEnd, on: Self.loop,
            handlers: .init(log: { level, text in seen.withLock { $0.append((level, text)) } }))
        defer { client.close() }
        let server = Mutex<AgentLinkServer?>(nil)
        let serving = AgentLinkServer.serve(
            LinkSocket(fd: agentFD),
            run: { _, payload, _, _ in
                logging(server.withLock { $0 })
                return .init(ok: true, elapsedNanos: 1, body: payload)
            }, control: { _ in }, onEnd: { _ in })
        serving.send(Self.hello)
        server.withLock { $0 = serving }
        try await body(client, seen)
    }

    /// A function's log lines travel on the link, written by the worker running the trigger: the node has
    /// them all, in order, before the trigger's result.
    @Test func logLinesArriveBeforeTheirResult() async throws {
        try await withLoggingLink({ link in
            #expect(link?.sendLog(level: 0, text: "first") == true)
            #expect(link?.sendLog(level: -4, text: "second: é") == true)
        }) { client, seen in
            for round in 1...3 {
                let reply = try await client.trigger(subject: "s", payload: [UInt8(round)], timeout: .seconds(5))
                #expect(reply.body == [UInt8(round)])
                #expect(seen.withLock { $0.count } == round * 2)
            }
            let lines = seen.withLock { $0.map { "\($0.0) \(String(decoding: $0.1, as: UTF8.self))" } }
            #expect(lines == Array(repeating: ["0 first", "-4 second: é"], count: 3).flatMap { $0 })
        }
    }

    /// A line past the limit is cut and marked; the link and the function live on.
    @Test func aHugeLogLineIsCutNotFatal() async throws {
        let huge = String(repeating: "x", count: 3 * AgentLinkServer.maxLogLineBytes)
        try await withLoggingLink({ _ = $0?.sendLog(level: 0, text: huge) }) { client, seen in
            for _ in 0..<2 {
                let reply = try await client.trigger(subject: "s", payload: [1], timeout: .seconds(5))
                #expect(reply.ok && reply.body == [1])
            }
            let lines = seen.withLock { $0.map(\.1) }
            #expect(lines.count == 2)
            let expected = Array(huge.utf8.prefix(AgentLinkServer.maxLogLineBytes)) + Array(" …[truncated]".utf8)
            #expect(lines.allSatisfy { $0 == expected })
        }
    }

    @Test func failuresCarryTheirText() async throws {
        try await withLink({ _, _, _ in .init(ok: false, elapsedNanos: 5, body: Array("Error: boom".utf8)) }) {
            client in
            let reply = try await client.trigger(subject: "s", payload: [], timeout: .seconds(5))
            #expect(!reply.ok && !reply.permanent && String(decoding: reply.body, as: UTF8.self) == "Error: boom")
        }
        // A failure the function marked permanent arrives so.
        try await withLink({ _, _, _ in .init(ok: false, elapsedNanos: 5, body: Array("bad".utf8), permanent: true) }) {
            client in
            let reply = try await client.trigger(subject: "s", payload: [], timeout: .seconds(5))
            #expect(!reply.ok && reply.permanent)
        }
    }

    @Test func aSilentAgentTimesOut() async throws {
        try await withLink({ _, _, _ in
            Thread.sleep(forTimeInterval: 3)
            return .init(ok: true, elapsedNanos: 0, body: [])
        }) { client in
            // The agent answers after 3 s: a call that throws did not wait for it (no clock needed to show it,
            // and none to flake on a loaded machine).
            await #expect(throws: LinkError.self) {
                try await client.trigger(subject: "s", payload: [], timeout: .milliseconds(500))
            }
        }
    }

    @Test func aClosedAgentEndFailsWaitingAndLaterCalls() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        let pending = Task { try await client.trigger(subject: "s", payload: [], timeout: .seconds(30)) }
        try await Task.sleep(for: .milliseconds(100))
        close(agentFD)  // the agent died
        await #expect(throws: LinkError.self) { try await pending.value }
        await #expect(throws: LinkError.self) {
            try await client.trigger(subject: "s", payload: [], timeout: .seconds(1))
        }
    }

    /// An agent that stops reading its link does not grow the node's memory: once the link's limit waits for
    /// it, triggers are refused at once.
    @Test func triggersAreRefusedWhileAnAgentDoesNotRead() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        defer { close(agentFD) }  // never read
        let limit = 4 << 20
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop, writeLimit: limit)
        let payload = [UInt8](repeating: 7, count: 1 << 20)
        let refusals = Shared<[String]>([])
        // Far more than the limit and any socket buffer: the later ones find the link full, whatever order
        // their tasks run in (the check is made on the loop, after the writes before it).
        var calls: [Task<Void, Never>] = []
        for _ in 0..<24 {
            calls.append(
                Task {
                    do { _ = try await client.trigger(subject: "s", payload: payload, timeout: .seconds(60)) } catch {
                        refusals.withLock { $0.append("\(error)") }
                    }
                })
        }
        while refusals.withLock({ $0.count }) < 8 { await Task.yield() }
        client.close()  // the written ones fail now
        for call in calls { await call.value }
        let texts = refusals.withLock { $0 }
        #expect(texts.contains { $0.contains("the agent is not reading its link") }, "\(texts.prefix(3))")
    }

    /// The agent's side: a node that stops reading makes the agent's senders wait once the queue's limit is
    /// reached, instead of queueing without end; closing the link releases them.
    @Test func anAgentsQueueToASilentNodeIsBounded() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        defer { close(nodeEnd) }  // never read
        let socket = LinkSocket(fd: agentFD)
        let frame = LinkFrame.log(level: 0, text: [UInt8](repeating: 1, count: 1 << 20))
        let frames = 3 * LinkSocket.queueLimit >> 20
        let sent = Shared((count: 0, done: false))
        // A thread of its own, as the agent's workers are: a send that waits blocks it.
        Thread {
            for _ in 0..<frames {
                guard socket.send(frame) else { break }
                sent.withLock { $0.count += 1 }
            }
            sent.withLock { $0.done = true }
        }.start()
        while socket.waitingBytes <= LinkSocket.queueLimit { await Task.yield() }
        // The next send waits for room that never comes while the node does not read.
        #expect(sent.withLock { $0.count } < frames)
        socket.close()
        while !sent.withLock({ $0.done }) { await Task.yield() }
        #expect(sent.withLock { $0.count } < frames)
    }

    /// The node's requests reach the agent's control loop, and each reply resumes its own caller.
    @Test func controlRequestsAreAnsweredByTheAgentsLoop() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        defer { client.close() }
        let server = Shared<AgentLinkServer?>(nil)
        let seen = Shared<[String]>([])
        let serving = AgentLinkServer.serve(
            LinkSocket(fd: agentFD), run: { _, payload, _, _ in .init(ok: true, elapsedNanos: 0, body: payload) },
            control: { frame in
                seen.withLock { $0.append(frame.kindName) }
                let link = server.withLock { $0 }
                switch frame {
                case .deploy(let id, let request):
                    link?.send(.reply(id: id, AgentResponse(ok: true, message: "running \(request.workloadName)")))
                case .heartbeat(let id): link?.send(.reply(id: id, AgentResponse(ok: true, message: "w1")))
                case .stop(let id): link?.send(.reply(id: id, AgentResponse(ok: true)))
                default: break
                }
            }, onEnd: { _ in })
        serving.send(Self.hello)
        server.withLock { $0 = serving }
        let request = AgentDeployRequest(
            workloadID: "w1", workloadName: "echo", namespace: "default", type: "v8", argv: [], environment: [:],
            essential: false, artifactPath: "/workload", totalBytes: 1, triggerSubjects: [])
        #expect(try await client.deploy(request, timeout: .seconds(5)).message == "running echo")
        async let beat = client.heartbeat(timeout: .seconds(5))
        async let stopped = client.stop(timeout: .seconds(5))
        #expect(try await beat.message == "w1")
        #expect(try await stopped.ok)
        // The heartbeat and the stop are sent at once, from two tasks: either may be first.
        let order = seen.withLock { $0 }
        #expect(order.first == "deploy" && order.count == 3 && Set(order.dropFirst()) == ["heartbeat", "stop"])
    }

    /// The agent's hello is kept until the node waits for it; the node's welcome reaches the agent's loop.
    @Test func helloThenWelcome() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        defer { client.close() }
        let (welcomes, welcomed) = AsyncStream.makeStream(of: AgentResponse.self)
        let server = AgentLinkServer.serve(
            LinkSocket(fd: agentFD), run: { _, payload, _, _ in .init(ok: true, elapsedNanos: 0, body: payload) },
            control: { frame in if case .welcome(let answer) = frame { welcomed.yield(answer) } }, onEnd: { _ in })
        let hello = AgentHandshake(id: "a1", version: "0.1.0", pid: 7, startupMillis: 2, protocolVersion: 2)
        #expect(server.send(.hello(hello)))
        // Sent before anyone waits: it waits for the node.
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await client.awaitHello(timeout: .seconds(5)) == hello)
        client.welcome(AgentResponse(ok: true))
        var answers = welcomes.makeAsyncIterator()
        #expect(await answers.next() == AgentResponse(ok: true))
    }

    /// An agent that never says hello fails the wait when its end closes (it died), not at the timeout.
    @Test func anAgentThatDiesBeforeItsHelloFailsTheWaitAtOnce() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        defer { client.close() }
        let waiting = Task { try await client.awaitHello(timeout: .seconds(600)) }
        close(agentFD)
        await #expect(throws: LinkError.self) { try await waiting.value }
    }

    /// A function's host call blocks its worker until the node answers on the link. The waiting thread reads
    /// the link itself: with the only worker waiting, the answer still arrives, and a trigger read meanwhile
    /// runs once the worker is free.
    @Test func hostCallsAreAnsweredWhileTheOnlyWorkerWaits() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let calls = Shared(0)
        let client = try await AgentLinkClient.start(
            descriptor: nodeEnd, on: Self.loop,
            handlers: .init(hostCall: { call, answer in
                let n = calls.withLock { count in
                    count += 1
                    return count
                }
                // The first answer waits until a second trigger is on its way to the busy worker.
                Task {
                    if n == 1 { try await Task.sleep(for: .milliseconds(200)) }
                    answer(true, Array("[\(String(decoding: call.arguments, as: UTF8.self))]".utf8))
                }
            }))
        defer { client.close() }
        let server = Shared<AgentLinkServer?>(nil)
        let serving = AgentLinkServer.serve(
            LinkSocket(fd: agentFD),
            run: { subject, payload, _, _ in
                guard let link = server.withLock({ $0 }) else { return .init(ok: false, elapsedNanos: 0, body: []) }
                let call = LinkFrame.HostCall(service: "kv", method: "get", arguments: payload)
                switch link.hostCall(call, timeout: .seconds(10)) {
                case .success(let answer):
                    return .init(ok: answer.ok, elapsedNanos: 0, body: answer.body + Array(subject.utf8))
                case .failure(let failure): return .init(ok: false, elapsedNanos: 0, body: Array("\(failure)".utf8))
                }
            }, control: { _ in }, onEnd: { _ in })
        serving.send(Self.hello)
        server.withLock { $0 = serving }
        async let first = client.trigger(subject: "a", payload: Array("1".utf8), timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(50))
        async let second = client.trigger(subject: "b", payload: Array("2".utf8), timeout: .seconds(10))
        let (one, two) = try await (first, second)
        #expect(String(decoding: one.body, as: UTF8.self) == "[1]a" && one.ok)
        #expect(String(decoding: two.body, as: UTF8.self) == "[2]b" && two.ok)
        #expect(calls.withLock { $0 } == 2)
    }

    /// A host call the node never answers fails at its deadline; one in flight when the link closes fails then.
    @Test func unansweredHostCallsFail() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(
            descriptor: nodeEnd, on: Self.loop, handlers: .init(hostCall: { _, _ in }))
        let server = AgentLinkServer.serve(
            LinkSocket(fd: agentFD), run: { _, payload, _, _ in .init(ok: true, elapsedNanos: 0, body: payload) },
            control: { _ in },
            onEnd: { _ in })
        server.send(Self.hello)
        let call = LinkFrame.HostCall(service: "kv", method: "get", arguments: Array("[]".utf8))
        let late = server.hostCall(call, timeout: .milliseconds(300))
        guard case .failure(let failure) = late else {
            Issue.record("an unanswered host call succeeded")
            return
        }
        #expect(failure.description.contains("did not answer"))
        let (outcomes, outcome) = AsyncStream.makeStream(of: String.self)
        Thread {
            if case .failure(let failure) = server.hostCall(call, timeout: .seconds(30)) {
                outcome.yield(failure.description)
            }
        }.start()
        try await Task.sleep(for: .milliseconds(100))
        client.close()
        var results = outcomes.makeAsyncIterator()
        #expect(await results.next()?.contains("closed") == true)
    }

    /// The workload's lines and its exit reach the node's handlers in the order the agent sent them.
    @Test func logLinesThenTheExit() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let (reports, report) = AsyncStream.makeStream(of: String.self)
        let client = try await AgentLinkClient.start(
            descriptor: nodeEnd, on: Self.loop,
            handlers: .init(
                log: { _, text in report.yield("log " + String(decoding: text, as: UTF8.self)) },
                exited: { code, message in report.yield("exited \(code) \(message)") }))
        defer { client.close() }
        let server = AgentLinkServer.serve(
            LinkSocket(fd: agentFD), run: { _, payload, _, _ in .init(ok: true, elapsedNanos: 0, body: payload) },
            control: { _ in },
            onEnd: { _ in })
        server.send(Self.hello)
        server.sendLog(level: 0, text: "last words")
        server.send(.exited(code: 3, message: "exit status 3"))
        var seen = reports.makeAsyncIterator()
        #expect(await seen.next() == "log last words")
        #expect(await seen.next() == "exited 3 exit status 3")
    }

    /// Each side refuses the frames only the other sends: the link ends with the reason.
    @Test func framesOfTheWrongSideEndTheLink() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        let pending = Task { try await client.trigger(subject: "s", payload: [], timeout: .seconds(30)) }
        let frame = Self.hello.encoded() + LinkFrame.trigger(id: 1, subject: "back", payload: []).encoded()
        _ = frame.withUnsafeBytes { write(agentFD, $0.baseAddress, $0.count) }
        let error = await #expect(throws: LinkError.self) { try await pending.value }
        #expect("\(error.map { "\($0)" } ?? "")".contains("only a node sends"))
        close(agentFD)

        let (node, agent) = try LinkSocket.socketPair()
        defer { close(node) }
        let (reasons, reason) = AsyncStream.makeStream(of: String.self)
        AgentLinkServer.serve(
            LinkSocket(fd: agent), run: { _, payload, _, _ in .init(ok: true, elapsedNanos: 0, body: payload) },
            control: { _ in },
            onEnd: { reason.yield($0) })
        let result = LinkFrame.result(id: 1, ok: true, elapsedNanos: 0, body: []).encoded()
        _ = result.withUnsafeBytes { write(node, $0.baseAddress, $0.count) }
        var ends = reasons.makeAsyncIterator()
        #expect(await ends.next()?.contains("only an agent sends") == true)
    }

    @Test func garbageFromTheAgentEndsTheLink() async throws {
        let (nodeEnd, agentFD) = try LinkSocket.socketPair()
        let client = try await AgentLinkClient.start(descriptor: nodeEnd, on: Self.loop)
        let pending = Task { try await client.trigger(subject: "s", payload: [], timeout: .seconds(30)) }
        let junk: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0, 0]
        _ = junk.withUnsafeBytes { write(agentFD, $0.baseAddress, $0.count) }
        let error = await #expect(throws: LinkError.self) { try await pending.value }
        #expect("\(error.map { "\($0)" } ?? "")".contains("malformed"))
        close(agentFD)
    }
}

/// A value behind a lock that closures and threads can share.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
