import Foundation
import NATSTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import NATS

/// A lone request's caller may wait for its reply on its own thread for a moment instead of parking
/// (`replyPollLimit`). These check that a polled request ends exactly as a parked one would: with its reply,
/// no-responders, a timeout or a cancellation, and that a request made on an event loop never polls.
/// Polling needs two cores (one poller per two); on fewer, requests always park and these do not apply.
@Suite(.timeLimit(.minutes(1)), .enabled(if: System.coreCount >= 2)) struct ReplyPollTests {
    /// Every request made off an event loop polls until it ends: what these check then does not depend on how
    /// quickly a busy machine answers, nor on other suites' pollers (the adaptive rule that decides when a
    /// real request polls is checked on its own, with a manual clock, in RequestMuxTests).
    private static func configure(_ config: inout NATSClient.Configuration) {
        config.replyPollForced = true
    }

    /// Sequential requests, each answered while its caller polled: the responder answers the i-th only once
    /// the i-th poll has begun (``PollGate``), so no reply can come before its caller polls for it.
    private func requestWhilePolling(_ client: NATSClient, gate: PollGate, subject: String) async throws {
        let mux = try client.requestMux()
        let before = mux.pollCounts
        for i in 0..<20 {
            gate.awaitPoll(before.polls + i + 1)
            #expect(try await client.request("r\(i)", to: subject).string == "r\(i)")
        }
        gate.awaitPoll(0)
        #expect(mux.pollCounts.polls - before.polls == 20)
        #expect(mux.pollCounts.replies - before.replies == 20)
    }

    /// Holds the echo responder's answer until the requester's poll count reaches a number (0: answers at once).
    final class PollGate: Sendable {
        private let awaited = Locked(0)
        func awaitPoll(_ count: Int) { awaited.withLock { $0 = count } }
        func open(for mux: RequestMux) async {
            while mux.pollCounts.polls < awaited.value { await Task.yield() }
        }
    }

    /// Whatever ends a request while its caller polls ends the poll at once, with that outcome, and the
    /// request is resumed exactly once: a reply, a cancellation (`fail`), the connection's end (`failAll`)
    /// or the timer. (Through the server these come long after a real poll's budget; here the poll may wait
    /// 30 s.) A poll that ran out would leave the outcome to the loop and count no polled reply, so the count
    /// says how the poll ended without a wall-clock bound a stalled machine could miss.
    @Test(arguments: ["reply", "cancel", "close", "timer"]) func aPollEndsWithWhateverEndsItsRequest(
        _ ending: String
    ) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let mux = RequestMux(prefix: "_INBOX.poll.", eventLoop: loop, pollLimit: .milliseconds(5))
        let token = mux.nextToken()
        async let outcome: Result<NATSMessage, NATSError> = {
            do {
                return .success(
                    try await withCheckedThrowingContinuation { c in
                        let timeout: Duration = ending == "timer" ? .milliseconds(50) : .seconds(30)
                        if mux.register(token, c, subject: "svc", timeout: timeout) { loop.execute { mux.armTimer() } }
                        // On a thread of its own: a long poll on a pool thread would starve the test's tasks.
                        Thread {
                            if let polled = mux.waitInPlace(token, for: .seconds(30)) { c.resume(with: polled) }
                        }.start()
                    })
            } catch {
                return .failure(error as? NATSError ?? NATSError(.handlerFailed, "\(error)"))
            }
        }()
        while mux.pollCounts.polls == 0 { await Task.yield() }  // the poll has begun
        switch ending {
        case "reply": mux.resolve(NATSMessage(subject: "_INBOX.poll.\(token)", payload: ByteBuffer(string: "ok")))
        case "cancel": mux.fail(token, NATSError(.cancelled, "request cancelled"))
        case "close": mux.failAll(NATSError(.connectionClosed, "closed"))
        default: break  // the timer ends it
        }
        let result = await outcome
        #expect(mux.pollCounts.replies == 1, "the poll ran out instead of ending with its request")
        switch (ending, result) {
        case ("reply", .success(let m)): #expect(String(buffer: m.payload) == "ok")
        case ("cancel", .failure(let e)): #expect(e.code == .cancelled)
        case ("close", .failure(let e)): #expect(e.code == .connectionClosed)
        case ("timer", .failure(let e)): #expect(e.code == .timeout)
        default: Issue.record("\(ending) ended the request with \(result)")
        }
    }

    /// A polling client, and an echo responder (`svc.echo`) on a connection of its own, after sequential
    /// requests that were polled for.
    private func withPolledEcho(
        _ body: (_ client: NATSClient, _ responder: NATSClient, _ mux: RequestMux) async throws -> Void
    ) async throws {
        try await withServerAndClient(configure: Self.configure) { server, client in
            try await withClient([server.url]) { responder in
                let mux = try client.requestMux()
                let gate = PollGate()
                try await responder.subscribe(to: "svc.echo") { m in
                    await gate.open(for: mux)
                    try await m.respond(m.bytes, using: responder)
                }
                try await responder.flush()
                try await requestWhilePolling(client, gate: gate, subject: "svc.echo")
                try await body(client, responder, mux)
            }
        }
    }

    @Test func sequentialRequestsTakeTheirRepliesWhilePolling() async throws {
        try await withPolledEcho { client, _, mux in
            #expect(mux.pollCounts.replies > 0)
            // No responders comes back as fast as a reply, and is the same typed error when polled for.
            let error = await #expect(throws: NATSError.self) {
                try await client.request("x", to: "nobody.home", timeout: .seconds(30))
            }
            #expect(error?.code == .noResponders)
        }
    }

    @Test func aPolledRequestStillTimesOutAndIsCancelled() async throws {
        try await withPolledEcho { client, responder, mux in
            let silent = try await responder.subscribe(to: "svc.silent")  // never answers
            try await responder.flush()

            // Nothing comes: the timer ends the request, and the poll with it.
            let timedOut = await #expect(throws: NATSError.self) {
                try await client.request("x", to: "svc.silent", timeout: .milliseconds(300))
            }
            #expect(timedOut?.code == .timeout)
            #expect(try await silent.nextMessage(timeout: .seconds(10))?.string == "x")

            // Cancelled once its request is out (while polling or parked), it ends at once, not after 30 s.
            let start = ContinuousClock.now
            let request = Task { try await client.request("y", to: "svc.silent", timeout: .seconds(30)) }
            #expect(try await silent.nextMessage(timeout: .seconds(10))?.string == "y")
            request.cancel()
            let cancelled = await #expect(throws: NATSError.self) { try await request.value }
            #expect(cancelled?.code == .cancelled)
            #expect(ContinuousClock.now - start < .seconds(10))

            // The next request is answered as usual.
            #expect(try await client.request("z", to: "svc.echo").string == "z")
        }
    }

    /// Polling on an event loop would hold up the very read that brings the reply.
    @Test func aRequestMadeOnTheEventLoopDoesNotPoll() async throws {
        try await withPolledEcho { client, _, mux in
            let before = mux.pollCounts.polls
            try await Task(executorPreference: client.taskExecutor) { () async throws -> Void in
                for i in 0..<20 {
                    #expect(try await client.request("l\(i)", to: "svc.echo").string == "l\(i)")
                }
            }.value
            #expect(mux.pollCounts.polls == before)
        }
    }

    @Test func aZeroLimitTurnsPollingOff() async throws {
        try await withServerAndClient(configure: { $0.replyPollLimit = .zero }) { server, client in
            try await client.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: client) }
            try await client.flush()
            for i in 0..<50 { #expect(try await client.request("r\(i)", to: "svc.echo").string == "r\(i)") }
            #expect(try client.requestMux().pollCounts.polls == 0)
        }
    }
}
