import NIOCore
import Synchronization

/// The one wildcard inbox (`<prefix>.<nuid>.*`) all requests of a client share. A reply is matched to its
/// request by the last token and resumes it directly from the event loop, with no extra task hop.
///
/// Timeouts use a single timer armed at the earliest deadline rather than one timer per request: a reply
/// then costs no timer cancellation, and a stream of requests re-arms the timer only when it fires.
final class RequestMux: Sendable {
    /// `<prefix>.<nuid>.`
    let prefix: String
    /// The loop the timer runs on (the client's).
    let eventLoop: any EventLoop
    private let state = Mutex(State())

    struct State {
        var next: UInt64 = 1
        var waiting: [UInt64: Waiter] = [:]
        var armed: (deadline: NIODeadline, task: Scheduled<Void>)?
    }

    struct Waiter {
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var deadline: NIODeadline
        var subject: String
        var timeout: Duration
    }

    init(prefix: String, eventLoop: any EventLoop) {
        self.prefix = prefix
        self.eventLoop = eventLoop
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
        let deadline = eventLoop.now + timeout.timeAmount
        return state.withLock { s in
            s.waiting[token] = Waiter(
                continuation: continuation, deadline: deadline, subject: subject, timeout: timeout)
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
        let expired = state.withLock { s -> [Waiter] in
            s.armed = nil
            let due = s.waiting.filter { $0.value.deadline <= now }
            for token in due.keys { s.waiting.removeValue(forKey: token) }
            return Array(due.values)
        }
        for w in expired {
            w.continuation.resume(throwing: NATSError(.timeout, "no reply within \(w.timeout)", subject: w.subject))
        }
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
        guard digits > 0, let waiter = state.withLock({ $0.waiting.removeValue(forKey: token) }) else { return }
        if message.status == 503 {
            waiter.continuation.resume(throwing: NATSError(.noResponders, "no responders", subject: waiter.subject))
        } else {
            waiter.continuation.resume(returning: message)
        }
    }

    func fail(_ token: UInt64, _ error: any Error) {
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: token) }) else { return }
        waiter.continuation.resume(throwing: error)
    }

    func failAll(_ error: any Error) {
        let all = state.withLock { s in
            defer {
                s.waiting.removeAll()
                s.armed?.task.cancel()
                s.armed = nil
            }
            return Array(s.waiting.values)
        }
        for w in all { w.continuation.resume(throwing: error) }
    }
}
