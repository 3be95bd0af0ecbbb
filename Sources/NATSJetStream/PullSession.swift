import NATS
import NUID
import Synchronization

/// A long-lived pull: one inbox, pull requests re-issued as they run out or expire, and each message handed
/// over the moment it arrives (unlike ``Consumer/fetch(_:expires:noWait:)``, which waits for a full batch).
/// A pull lost to a reconnect shows as silence and is re-issued after `expires`.
final class PullSession: Sendable {
    let consumer: Consumer
    let batch: Int
    let expires: Duration
    let inbox: String
    let subscription: NATSSubscription
    /// Messages still owed by the outstanding pull request (0: none outstanding).
    private let owed = Locked(0)

    init(consumer: Consumer, batch: Int, expires: Duration) async throws {
        self.consumer = consumer
        self.batch = batch
        self.expires = expires
        let client = consumer.js.client
        inbox = "\(client.configuration.inboxPrefix).\(NUID.next())"
        subscription = try await client.subscribe(to: inbox)
    }

    /// The next message; waits as long as it takes, re-pulling as needed. Throws on 409 (consumer gone,
    /// exceeded limits) and when the consumer no longer exists.
    func next() async throws -> JetStreamMessage {
        let client = consumer.js.client
        while true {
            try Task.checkCancellation()
            if owed.value == 0 { try await pull() }
            let m: NATSMessage?
            do {
                m = try await subscription.nextMessage(timeout: expires + .seconds(2))
            } catch let e as NATSError where e.code == .timeout {
                owed.set(0)  // the pull was lost (e.g. a reconnect): ask again
                continue
            }
            guard let m else { throw CancellationError() }
            switch m.status {
            case 404?, 408?:
                owed.set(0)
            case 409?:
                let reason = m.headers?.statusDescription ?? "conflict"
                if reason.lowercased().contains("leadership") || reason.lowercased().contains("exceeded") {
                    owed.set(0)
                } else {
                    throw JetStreamError(code: 409, errorCode: 0, description: reason)
                }
            case 100?:
                if let reply = m.replyTo { try await client.publish([UInt8](), to: reply) }
            case let status?:
                throw JetStreamError(code: status, errorCode: 0, description: m.headers?.statusDescription ?? "")
            case nil:
                owed.withLock { $0 = Swift.max($0 - 1, 0) }
                if let jm = JetStreamMessage(m, client: client) { return jm }
            }
        }
    }

    private func pull() async throws {
        struct Pull: Encodable {
            var batch: Int
            var expires: Int64
        }
        let body = Array(try JetStreamContext.encoder.encode(Pull(batch: batch, expires: Nanos.encode(expires))))
        let js = consumer.js
        try await js.client.publish(
            body, to: "\(js.apiPrefix).CONSUMER.MSG.NEXT.\(consumer.stream).\(consumer.name)", replyTo: inbox)
        owed.set(batch)
    }

    /// Ends the session's subscription (and so its pulls). Also done when the session goes away: a loop over
    /// `messages()` that breaks early drops its iterator, and with it the session.
    func close() {
        subscription.unsubscribeNow()
    }

    deinit { subscription.unsubscribeNow() }
}

/// A value behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    var value: Value { mutex.withLock { $0 } }
    func set(_ v: Value) { mutex.withLock { $0 = v } }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// The wait before retry number `failures` of a pull: doubling from 100 ms, capped.
func retryBackoff(failures: Int, cap: Duration = .seconds(2)) -> Duration {
    min(.milliseconds(50 * (1 << min(failures, 6))), cap)
}
