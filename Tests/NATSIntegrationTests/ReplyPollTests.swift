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
    /// A generous limit, so that a slow CI machine's replies still count as quick enough to poll for.
    private static func configure(_ config: inout NATSClient.Configuration) {
        config.replyPollLimit = .milliseconds(50)
    }

    /// Sequential requests until one was answered while its caller polled (other suites' pollers may hold the
    /// process's one polling slot for a while; the first request never polls, having no reply time yet).
    private func requestUntilPolled(_ client: NATSClient, subject: String) async throws -> RequestMux {
        let mux = try client.requestMux()
        for i in 0..<500 where mux.pollCounts.replies == 0 {
            #expect(try await client.request("r\(i)", to: subject).string == "r\(i)")
        }
        return mux
    }

    /// Whatever ends a request while its caller polls ends the poll at once, with that outcome, and the
    /// request is resumed exactly once: a reply, a cancellation (`fail`), the connection's end (`failAll`)
    /// or the timer. (Through the server these come long after a real poll's budget; here the poll waits up
    /// to 5 s.)
    @Test(arguments: ["reply", "cancel", "close", "timer"]) func aPollEndsWithWhateverEndsItsRequest(
        _ ending: String
    ) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let mux = RequestMux(prefix: "_INBOX.poll.", eventLoop: loop, pollLimit: .milliseconds(5))
        let token = mux.nextToken()
        let start = ContinuousClock.now
        async let outcome: Result<NATSMessage, NATSError> = {
            do {
                return .success(
                    try await withCheckedThrowingContinuation { c in
                        let timeout: Duration = ending == "timer" ? .milliseconds(50) : .seconds(30)
                        if mux.register(token, c, subject: "svc", timeout: timeout) { loop.execute { mux.armTimer() } }
                        // On a thread of its own: a 5 s poll on a pool thread would starve the test's tasks.
                        Thread {
                            if let polled = mux.waitInPlace(token, for: .seconds(5)) { c.resume(with: polled) }
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
        #expect(ContinuousClock.now - start < .seconds(4), "the poll ran out instead of ending with its request")
        #expect(mux.pollCounts.replies == 1)
        switch (ending, result) {
        case ("reply", .success(let m)): #expect(String(buffer: m.payload) == "ok")
        case ("cancel", .failure(let e)): #expect(e.code == .cancelled)
        case ("close", .failure(let e)): #expect(e.code == .connectionClosed)
        case ("timer", .failure(let e)): #expect(e.code == .timeout)
        default: Issue.record("\(ending) ended the request with \(result)")
        }
    }

    /// A polling client, and an echo responder (`svc.echo`) on a connection of its own, after sequential
    /// requests until one was polled for.
    private func withPolledEcho(
        _ body: (_ client: NATSClient, _ responder: NATSClient, _ mux: RequestMux) async throws -> Void
    ) async throws {
        try await withServerAndClient(configure: Self.configure) { server, client in
            try await withClient([server.url]) { responder in
                try await responder.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: responder) }
                try await responder.flush()
                try await body(client, responder, try await requestUntilPolled(client, subject: "svc.echo"))
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

            // The poll runs out (nothing comes), the caller parks, and the timer ends the request.
            let polls = mux.pollCounts
            let timedOut = await #expect(throws: NATSError.self) {
                try await client.request("x", to: "svc.silent", timeout: .milliseconds(300))
            }
            #expect(timedOut?.code == .timeout)
            #expect(mux.pollCounts.replies == polls.replies)
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
