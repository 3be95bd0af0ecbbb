import Synchronization

/// The node's side of an agent link: sends a function's triggers and matches the results to the callers.
public final class AgentLinkClient: Sendable {
    /// What the function answered.
    public struct Reply: Sendable {
        /// False when the function failed; `body` is then the error text.
        public var ok: Bool
        /// Time the function ran.
        public var elapsedNanos: Int64
        /// The reply, or the error text.
        public var body: [UInt8]
    }

    private struct Pending {
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Reply, any Error>
    }

    private struct State {
        var nextID: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
        var ended: String?
    }

    private let socket: LinkSocket
    private let state = Mutex(State())

    private init(socket: LinkSocket) {
        self.socket = socket
    }

    /// Starts reading results from `socket`.
    public static func start(_ socket: LinkSocket) -> AgentLinkClient {
        let client = AgentLinkClient(socket: socket)
        socket.startReading(name: "nex-link-node") { frame in
            guard case .result(let id, let ok, let elapsed, let body) = frame else { return }
            let waiter = client.state.withLock { $0.pending.removeValue(forKey: id) }
            waiter?.continuation.resume(returning: Reply(ok: ok, elapsedNanos: elapsed, body: body))
        } onTick: {
            client.expire()
        } onEnd: { reason in
            client.end("the agent link closed: \(reason)")
        }
        return client
    }

    /// Runs the function for a message on `subject`; throws when the link is gone or no result came within
    /// `timeout` (checked about once a second).
    public func trigger(subject: String, payload: [UInt8], traceParent: String? = nil, timeout: Duration)
        async throws -> Reply
    {
        try await withCheckedThrowingContinuation { continuation in
            let id = state.withLock { s -> UInt64? in
                guard s.ended == nil else { return nil }
                let id = s.nextID
                s.nextID += 1
                s.pending[id] = Pending(deadline: .now + timeout, continuation: continuation)
                return id
            }
            guard let id else {
                continuation.resume(throwing: LinkError(state.withLock { $0.ended } ?? "the agent link is closed"))
                return
            }
            if !socket.send(.trigger(id: id, subject: subject, payload: payload, traceParent: traceParent)) {
                let waiter = state.withLock { $0.pending.removeValue(forKey: id) }
                waiter?.continuation.resume(throwing: LinkError("the agent link is closed"))
            }
        }
    }

    /// Closes the link; calls still waiting fail.
    public func close() {
        socket.close()
        end("the agent link was closed")
    }

    private func expire() {
        let now = ContinuousClock.now
        let expired = state.withLock { s in
            let ids = s.pending.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.pending.removeValue(forKey: $0) }
        }
        for waiter in expired { waiter.continuation.resume(throwing: LinkError("the function did not answer in time")) }
    }

    private func end(_ reason: String) {
        let waiters = state.withLock { s in
            if s.ended == nil { s.ended = reason }
            defer { s.pending.removeAll() }
            return Array(s.pending.values)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: LinkError(reason)) }
    }
}
