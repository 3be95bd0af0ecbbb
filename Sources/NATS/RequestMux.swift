import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The one wildcard inbox (`<prefix>.<nuid>.*`) all requests of a client share. A reply is matched to its
/// request by the last token and resumes it directly from the event loop, with no extra task hop, or is
/// handed to its caller if the caller is polling for it (below).
///
/// Timeouts use a single timer armed at the earliest deadline rather than one timer per request: a reply
/// then costs no timer cancellation, and a stream of requests re-arms the timer only when it fires.
///
/// A lone request may be *polled*: its caller keeps its thread for a short while after the request went out
/// and takes the reply itself when it comes, instead of parking and being woken by the event loop (a futex
/// wake of an idle thread, which is most of the difference to nats.go on request/reply). See ``pollBudget()``.
final class RequestMux: Sendable {
    /// `<prefix>.<nuid>.`
    let prefix: String
    /// The loop the timer runs on (the client's).
    let eventLoop: any EventLoop
    /// The longest a caller polls for its reply; zero turns polling off.
    let pollLimit: Duration
    /// Tests only: every request made off an event loop polls until it ends (at most ``forcedPollLimit``),
    /// whatever the reply times, other requests in flight and other pollers in the process, so what a poll
    /// does can be checked without depending on how busy the machine is.
    let pollingForced: Bool
    private let state = Mutex(State())
    /// Set when the polled request's outcome is in `State.polled`: the poller spins on this, not on the lock.
    private let polledOutcomeReady = Atomic<Bool>(false)

    /// Callers polling at once, across the process: each holds its thread (a pool thread, or the main
    /// thread for a main-actor caller).
    private static let pollers = Atomic<Int>(0)
    private static let maxPollers = System.coreCount / 2

    struct State {
        var next: UInt64 = 1
        var waiting: [UInt64: Waiter] = [:]
        var armed: (deadline: NIODeadline, task: Scheduled<Void>)?
        /// The request whose caller is polling, and its outcome once the loop has it.
        var polled: (token: UInt64, outcome: Result<NATSMessage, any Error>?)?
        /// Smoothed time from a request's registration to its reply, in nanoseconds (0: none seen yet).
        var replyTime: Int64 = 0
        /// Polls started, and those that took their reply (for tests and profiling).
        var polls = 0
        var polledReplies = 0
    }

    struct Waiter {
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var registered: NIODeadline
        var deadline: NIODeadline
        var subject: String
        var timeout: Duration
    }

    /// Polling longer than this costs more CPU than the wake-up it saves is worth, whatever is configured.
    static let maxPollLimit = Duration.milliseconds(5)

    /// How long a forced poll may last.
    static let forcedPollLimit = Duration.seconds(5)

    init(prefix: String, eventLoop: any EventLoop, pollLimit: Duration = .zero, pollingForced: Bool = false) {
        self.prefix = prefix
        self.eventLoop = eventLoop
        self.pollLimit = min(max(pollLimit, .zero), Self.maxPollLimit)
        self.pollingForced = pollingForced
    }

    /// A new token for a request; the reply subject is `prefix + token`.
    func nextToken() -> UInt64 {
        state.withLock { s in
            defer { s.next += 1 }
            return s.next
        }
    }

    /// Registers a request; returns true when the timer must be (re)armed by ``armTimer()`` on the loop.
    func register(
        _ token: UInt64, _ continuation: CheckedContinuation<NATSMessage, any Error>, subject: String,
        timeout: Duration
    ) -> Bool {
        let now = eventLoop.now  // the loop's clock (a test's may be manual)
        let deadline = now + timeout.timeAmount
        return state.withLock { s in
            s.waiting[token] = Waiter(
                continuation: continuation, registered: now, deadline: deadline, subject: subject, timeout: timeout)
            return s.armed.map { deadline < $0.deadline } ?? true
        }
    }

    /// Arms the timer at the earliest deadline, if it is not armed there already. Runs on the event loop.
    func armTimer() {
        eventLoop.assertInEventLoop()
        let earliest = state.withLock { s -> NIODeadline? in
            guard let earliest = s.waiting.values.lazy.map(\.deadline).min() else { return nil }
            if let armed = s.armed, armed.deadline <= earliest { return nil }
            s.armed?.task.cancel()
            s.armed = nil
            return earliest
        }
        guard let earliest else { return }
        let task = eventLoop.scheduleTask(deadline: earliest) { self.expire() }
        state.withLock { $0.armed = (earliest, task) }
    }

    /// The timer fired: fails every request past its deadline, then re-arms for the rest.
    private func expire() {
        let now = eventLoop.now
        let expired = state.withLock { s -> [(Waiter, NATSError)] in
            s.armed = nil
            return s.waiting.filter { $0.value.deadline <= now }.compactMap { token, w in
                let error = NATSError(.timeout, "no reply within \(w.timeout)", subject: w.subject)
                return complete(token, with: .failure(error), in: &s).map { ($0, error) }
            }
        }
        for (w, error) in expired { w.continuation.resume(throwing: error) }
        armTimer()
    }

    /// Completes the request a reply belongs to; replies for unknown tokens (late, duplicate) are ignored.
    func resolve(_ message: NATSMessage) {
        var token: UInt64 = 0
        var digits = 0
        for b in message.subject.utf8.dropFirst(prefix.utf8.count) {
            guard b >= 48, b <= 57, digits < 19 else { return }
            token = token * 10 + UInt64(b - 48)
            digits += 1
        }
        guard digits > 0 else { return }
        let now = eventLoop.now
        let resumable = state.withLock { s -> (Waiter, Result<NATSMessage, any Error>)? in
            guard let w = s.waiting[token] else { return nil }
            let took = (now - w.registered).nanoseconds
            s.replyTime = s.replyTime == 0 ? took : s.replyTime + (took - s.replyTime) / 8
            let outcome: Result<NATSMessage, any Error> =
                message.status == 503
                ? .failure(NATSError(.noResponders, "no responders", subject: w.subject)) : .success(message)
            return complete(token, with: outcome, in: &s).map { ($0, outcome) }
        }
        guard let (waiter, outcome) = resumable else { return }
        waiter.continuation.resume(with: outcome)
    }

    func fail(_ token: UInt64, _ error: any Error) {
        guard let waiter = state.withLock({ complete(token, with: .failure(error), in: &$0) }) else { return }
        waiter.continuation.resume(throwing: error)
    }

    func failAll(_ error: any Error) {
        let all = state.withLock { s in
            defer {
                s.armed?.task.cancel()
                s.armed = nil
            }
            return s.waiting.keys.compactMap { complete($0, with: .failure(error), in: &s) }
        }
        for w in all { w.continuation.resume(throwing: error) }
    }

    /// Removes a request; returns its waiter for the caller to resume, or nil when there is none or its caller
    /// is polling (then the outcome is left for the poller).
    private func complete(
        _ token: UInt64, with outcome: Result<NATSMessage, any Error>, in s: inout State
    ) -> Waiter? {
        guard let waiter = s.waiting.removeValue(forKey: token) else { return nil }
        guard s.polled?.token == token else { return waiter }
        s.polled?.outcome = outcome
        polledOutcomeReady.store(true, ordering: .releasing)
        return nil
    }

    // MARK: Polling

    /// How long the caller of the request just sent should poll for its reply, or nil to park at once.
    ///
    /// Only a lone request polls (no other request of this client in flight), only while replies have been
    /// coming quickly (within half of ``pollLimit``, smoothed), never on an event loop's thread, and only one
    /// caller per two cores polls at a time: a poller holds its thread, and on a busy client parking and
    /// being woken costs less.
    func pollBudget() -> Duration? {
        // Never on an event loop: it would hold up the very I/O it waits for.
        if pollingForced { return MultiThreadedEventLoopGroup.currentEventLoop == nil ? Self.forcedPollLimit : nil }
        guard pollLimit > .zero, Self.maxPollers > 0, MultiThreadedEventLoopGroup.currentEventLoop == nil else {
            return nil
        }
        let limit = pollLimit.nanoseconds
        let budget = state.withLock { s -> Int64? in
            guard s.polled == nil, s.waiting.count == 1, s.replyTime > 0, s.replyTime * 2 <= limit else { return nil }
            return min(limit, s.replyTime * 3)
        }
        return budget.map { .nanoseconds($0) }
    }

    /// Polls for the reply to `token` for up to `budget`: returns its outcome, or nil when it did not come in
    /// time (the event loop then resumes the caller as usual).
    func poll(_ token: UInt64, for budget: Duration) -> Result<NATSMessage, any Error>? {
        if pollingForced { return waitInPlace(token, for: budget) }
        guard Self.pollers.wrappingAdd(1, ordering: .relaxed).newValue <= Self.maxPollers else {
            Self.pollers.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        defer { Self.pollers.wrappingSubtract(1, ordering: .relaxed) }
        return waitInPlace(token, for: budget)
    }

    /// The poll itself, without the process-wide limit (which ``poll(_:for:)`` applies; tests call this).
    func waitInPlace(_ token: UInt64, for budget: Duration) -> Result<NATSMessage, any Error>? {
        let claimed = state.withLock { s -> Bool in
            // Already answered or failed (the loop resumed it), or another caller polls (there is one slot).
            guard s.waiting[token] != nil, s.polled == nil else { return false }
            s.polled = (token, nil)
            s.polls += 1
            polledOutcomeReady.store(false, ordering: .relaxed)
            return true
        }
        guard claimed else { return nil }
        let end = NIODeadline.now() + budget.timeAmount
        while !polledOutcomeReady.load(ordering: .acquiring), NIODeadline.now() < end {
            sched_yield()  // lets the server, the responder and the event loop have this core
        }
        return state.withLock { s in
            defer { s.polled = nil }
            if s.polled?.outcome != nil { s.polledReplies += 1 }
            return s.polled?.outcome
        }
    }

    /// Requests waiting for their reply.
    var inFlight: Int { state.withLock { $0.waiting.count } }

    /// Polls started and polls that took their reply, so far.
    var pollCounts: (polls: Int, replies: Int) {
        state.withLock { ($0.polls, $0.polledReplies) }
    }
}
