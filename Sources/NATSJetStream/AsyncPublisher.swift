public import NATS
import NUID
import Synchronization

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Publishes to streams without waiting for each acknowledgement: up to `maxPending` acks in flight, then
/// `publish` waits for room. ``waitForCompletion(timeout:)`` waits for the rest and reports failures.
public final class JetStreamAsyncPublisher: Sendable {
    let js: JetStreamContext
    let prefix: String
    let tracker: AckTracker
    let subscription: NATSSubscription

    /// Outcome of the publishes so far.
    public struct Summary: Sendable {
        public var acknowledged: Int
        public var failures: [JetStreamError]
        /// Publishes still waiting for an acknowledgement (non-zero only after a timeout).
        public var outstanding: Int
    }

    /// Creates a publisher with its own acknowledgement inbox.
    public init(js: JetStreamContext, maxPending: Int = 4000) async throws {
        self.js = js
        let prefix = "\(js.client.configuration.inboxPrefix).\(NUID.next())."
        let tracker = AckTracker(maxPending: maxPending)
        self.prefix = prefix
        self.tracker = tracker
        subscription = try await js.client.subscribe(to: prefix + "*") { message in
            guard let token = UInt64(message.subject.dropFirst(prefix.count)) else { return }
            tracker.acknowledged(token, failure: Self.failure(in: message))
        }
        try await js.client.flush()
    }

    /// Sends a message to a stream; returns once it is sent (waiting only when `maxPending` acks are due).
    public func publish(
        _ payload: some Collection<UInt8>, to subject: String, headers: NATSHeaders? = nil,
        options: PublishOptions = PublishOptions()
    ) async throws {
        let token = await tracker.reserve()
        do {
            try await js.client.publish(
                payload, to: subject, replyTo: prefix + String(token), headers: options.apply(to: headers))
        } catch {
            tracker.acknowledged(token, failure: nil, counted: false)
            throw error
        }
    }

    /// Waits until every publish so far is acknowledged (or `timeout` passes) and reports the outcome.
    public func waitForCompletion(timeout: Duration = .seconds(30)) async -> Summary {
        await tracker.waitUntilDone(deadline: ContinuousClock.now + timeout)
        return tracker.summary
    }

    /// Stops listening for acknowledgements.
    public func close() async {
        try? await subscription.unsubscribe()  // a closed connection has ended it already
    }

    /// The error in an acknowledgement, if it is one (a plain `{"stream":…}` ack needs no JSON decode).
    static func failure(in message: NATSMessage) -> JetStreamError? {
        if message.status == 503 { return JetStreamError(code: 503, errorCode: 0, description: "no stream answered") }
        guard JetStreamContext.mentionsError(message.payload) else { return nil }
        let data = Data(message.payload.readableBytesView)
        // Not an error envelope: the raw text is the failure.
        return (try? JetStreamContext.decoder.decode(JetStreamContext.ErrorEnvelope.self, from: data))?.error
            ?? JetStreamError.client(String(decoding: data, as: UTF8.self))
    }
}

/// The acknowledgements in flight, the window, and who waits for room or for completion.
final class AckTracker: Sendable {
    let maxPending: Int
    private let state = Mutex(State())

    struct State {
        var nextToken: UInt64 = 1
        var outstanding: Set<UInt64> = []
        var acked = 0
        var failures: [JetStreamError] = []
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        var doneWaiters: [CheckedContinuation<Void, Never>] = []
    }

    init(maxPending: Int) { self.maxPending = maxPending }

    /// A token for the next publish, once the window has room.
    func reserve() async -> UInt64 {
        while true {
            let token = state.withLock { s -> UInt64? in
                guard s.outstanding.count < maxPending else { return nil }
                defer { s.nextToken += 1 }
                s.outstanding.insert(s.nextToken)
                return s.nextToken
            }
            if let token { return token }
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    guard s.outstanding.count >= maxPending else { return true }
                    s.roomWaiters.append(c)
                    return false
                }
                if now { c.resume() }
            }
        }
    }

    /// An acknowledgement arrived (or a publish failed to send, `counted: false`).
    func acknowledged(_ token: UInt64, failure: JetStreamError?, counted: Bool = true) {
        let (rooms, dones) = state.withLock {
            s -> ([CheckedContinuation<Void, Never>], [CheckedContinuation<Void, Never>]) in
            guard s.outstanding.remove(token) != nil else { return ([], []) }
            if counted {
                if let failure { s.failures.append(failure) } else { s.acked += 1 }
            }
            defer {
                s.roomWaiters.removeAll()
                if s.outstanding.isEmpty { s.doneWaiters.removeAll() }
            }
            return (s.roomWaiters, s.outstanding.isEmpty ? s.doneWaiters : [])
        }
        for c in rooms { c.resume() }
        for c in dones { c.resume() }
    }

    func waitUntilDone(deadline: ContinuousClock.Instant) async {
        // Poll the deadline coarsely: completion normally wakes the waiter at once.
        while state.withLock({ !$0.outstanding.isEmpty }), ContinuousClock.now < deadline {
            let waiter = Task {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s -> Bool in
                        guard !s.outstanding.isEmpty else { return true }
                        s.doneWaiters.append(c)
                        return false
                    }
                    if now { c.resume() }
                }
            }
            let timer = Task {
                try? await Task.sleep(for: .milliseconds(100))  // cancelled: an early wake-up, the loop re-checks
                self.wakeDoneWaiters()
            }
            await waiter.value
            timer.cancel()
        }
    }

    private func wakeDoneWaiters() {
        let dones = state.withLock { s in
            defer { s.doneWaiters.removeAll() }
            return s.doneWaiters
        }
        for c in dones { c.resume() }
    }

    var summary: JetStreamAsyncPublisher.Summary {
        state.withLock { .init(acknowledged: $0.acked, failures: $0.failures, outstanding: $0.outstanding.count) }
    }
}
