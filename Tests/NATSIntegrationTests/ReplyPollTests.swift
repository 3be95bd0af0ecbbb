import NATSTestSupport
import Testing

@testable import NATS

/// A lone request's caller may wait for its reply on its own thread for a moment instead of parking
/// (`replyPollLimit`). These check that a polled request ends exactly as a parked one would: with its reply,
/// no-responders, a timeout or a cancellation, and that a request made on an event loop never polls.
@Suite(.timeLimit(.minutes(1))) struct ReplyPollTests {
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

    @Test func sequentialRequestsTakeTheirRepliesWhilePolling() async throws {
        try await withServerAndClient(configure: Self.configure) { server, client in
            try await withClient([server.url]) { responder in
                try await responder.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: responder) }
                try await responder.flush()
                let mux = try await requestUntilPolled(client, subject: "svc.echo")
                #expect(mux.pollCounts.replies > 0)
                // No responders comes back as fast as a reply, and is the same typed error when polled for.
                let error = await #expect(throws: NATSError.self) {
                    try await client.request("x", to: "nobody.home", timeout: .seconds(30))
                }
                #expect(error?.code == .noResponders)
            }
        }
    }

    @Test func aPolledRequestStillTimesOutAndIsCancelled() async throws {
        try await withServerAndClient(configure: Self.configure) { server, client in
            try await withClient([server.url]) { responder in
                try await responder.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: responder) }
                let silent = try await responder.subscribe(to: "svc.silent")  // never answers
                try await responder.flush()
                let mux = try await requestUntilPolled(client, subject: "svc.echo")

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
    }

    /// Polling on an event loop would hold up the very read that brings the reply.
    @Test func aRequestMadeOnTheEventLoopDoesNotPoll() async throws {
        try await withServerAndClient(configure: Self.configure) { server, client in
            try await withClient([server.url]) { responder in
                try await responder.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: responder) }
                try await responder.flush()
                let mux = try await requestUntilPolled(client, subject: "svc.echo")
                let before = mux.pollCounts.polls
                try await Task(executorPreference: client.taskExecutor) { () async throws -> Void in
                    for i in 0..<20 {
                        #expect(try await client.request("l\(i)", to: "svc.echo").string == "l\(i)")
                    }
                }.value
                #expect(mux.pollCounts.polls == before)
            }
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
