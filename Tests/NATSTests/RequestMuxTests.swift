import NIOCore
import NIOEmbedded
import Testing

@testable import NATS

/// The rule that decides when a request's caller polls for its reply, on a manual clock.
@Suite(.enabled(if: System.coreCount >= 2)) struct RequestMuxTests {
    /// A request polls only while replies come within half the limit (smoothed, on the loop's clock), only
    /// when it is alone, and only once a reply time is known.
    @Test func theAdaptiveRuleDecidesWhenARequestPolls() async throws {
        let loop = NIOAsyncTestingEventLoop()
        let mux = RequestMux(prefix: "_INBOX.rule.", eventLoop: loop, pollLimit: .milliseconds(4))
        var requests: [Task<NATSMessage, any Error>] = []
        /// Registers a request as `request` does, and waits until the mux holds it.
        func send() async -> UInt64 {
            let token = mux.nextToken()
            let before = mux.inFlight
            requests.append(
                Task {
                    try await withCheckedThrowingContinuation { c in
                        _ = mux.register(token, c, subject: "svc", timeout: .seconds(30))
                    }
                })
            while mux.inFlight == before { await Task.yield() }
            return token
        }
        func answer(_ token: UInt64, after time: TimeAmount) async {
            await loop.advanceTime(by: time)
            mux.resolve(NATSMessage(subject: "_INBOX.rule.\(token)", payload: ByteBuffer(string: "ok")))
        }
        let first = await send()
        #expect(mux.pollBudget() == nil)  // no reply time yet
        await answer(first, after: .milliseconds(1))
        let second = await send()
        #expect(mux.pollBudget() == .milliseconds(3))  // three reply times, within the limit
        let third = await send()
        #expect(mux.pollBudget() == nil)  // not alone
        await answer(second, after: .zero)
        await answer(third, after: .zero)
        for _ in 0..<40 { await answer(await send(), after: .milliseconds(10)) }  // replies slower than half the limit
        _ = await send()
        #expect(mux.pollBudget() == nil)
        mux.failAll(NATSError(.connectionClosed, "done"))
        for request in requests { _ = try? await request.value }  // every one was resumed
        #expect(mux.inFlight == 0)
    }
}
