import NIOCore
import Synchronization

/// The one wildcard inbox (`<prefix>.<nuid>.*`) all requests of a client share. A reply is matched to its
/// request by the last token and resumes it directly from the event loop, with no extra task hop.
final class RequestMux: Sendable {
    /// `<prefix>.<nuid>.`
    let prefix: String
    private let pending = Mutex<(next: UInt64, waiting: [UInt64: Waiter])>((1, [:]))

    struct Waiter {
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var timer: Scheduled<Void>?
    }

    init(prefix: String) {
        self.prefix = prefix
    }

    /// A new token for a request; the reply subject is `prefix + token`.
    func nextToken() -> UInt64 {
        pending.withLock { p in
            defer { p.next += 1 }
            return p.next
        }
    }

    func register(_ token: UInt64, _ continuation: CheckedContinuation<NATSMessage, any Error>) {
        pending.withLock { $0.waiting[token] = Waiter(continuation: continuation) }
    }

    func setTimer(_ token: UInt64, _ timer: Scheduled<Void>) {
        let late = pending.withLock { p -> Bool in
            guard p.waiting[token] != nil else { return true }
            p.waiting[token]!.timer = timer
            return false
        }
        if late { timer.cancel() }
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
        guard let waiter = pending.withLock({ $0.waiting.removeValue(forKey: token) }) else { return }
        waiter.timer?.cancel()
        if message.status == 503 {
            waiter.continuation.resume(throwing: NATSError(.noResponders, "no responders", subject: nil))
        } else {
            waiter.continuation.resume(returning: message)
        }
    }

    func fail(_ token: UInt64, _ error: any Error) {
        guard let waiter = pending.withLock({ $0.waiting.removeValue(forKey: token) }) else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(throwing: error)
    }

    func failAll(_ error: any Error) {
        let all = pending.withLock { p in
            defer { p.waiting.removeAll() }
            return Array(p.waiting.values)
        }
        for w in all {
            w.timer?.cancel()
            w.continuation.resume(throwing: error)
        }
    }
}
