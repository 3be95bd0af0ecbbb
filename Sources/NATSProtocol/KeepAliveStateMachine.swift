/// Decides, at every ping interval, whether to send a PING or to declare the connection stale.
///
/// Pure: the caller owns the timer and the socket and runs the returned action.
public struct KeepAliveStateMachine: Sendable {
    /// PINGs that may be outstanding before the connection is stale.
    public let maxOutstanding: Int
    /// PINGs sent without a PONG yet.
    public private(set) var outstanding = 0

    /// What to do when the ping timer fires.
    public enum Action: Equatable, Sendable {
        /// Send a PING (and count it).
        case sendPing
        /// Too many PINGs went unanswered: close the connection as stale and reconnect.
        case closeStale
    }

    public init(maxOutstanding: Int) {
        self.maxOutstanding = maxOutstanding
    }

    /// The ping interval elapsed.
    public mutating func timerFired() -> Action {
        if outstanding >= maxOutstanding { return .closeStale }
        outstanding += 1
        return .sendPing
    }

    /// Any PONG proves the server is alive.
    public mutating func pongReceived() {
        outstanding = 0
    }
}
