/// What a client has sent and received since it was made, as NATS clients count it (nats.go's `Statistics`):
/// messages and payload bytes in each direction, and reconnects.
public struct NATSStatistics: Sendable, Equatable {
    /// Messages delivered to this client (to subscriptions and the request inbox).
    public var inMessages = 0
    /// Payload bytes of those messages (without headers and protocol framing).
    public var inBytes = 0
    /// Messages published (requests included).
    public var outMessages = 0
    /// Payload bytes of those messages (without headers and protocol framing).
    public var outBytes = 0
    /// Times the client connected again after losing a connection.
    public var reconnects = 0

    public init() {}
}

extension NATSClient {
    /// The client's counters so far. Reading them takes the client's lock once; they are kept under the lock
    /// the publish and delivery paths hold anyway, so counting costs no extra synchronisation.
    public var statistics: NATSStatistics { state.withLock { $0.statistics } }
}
