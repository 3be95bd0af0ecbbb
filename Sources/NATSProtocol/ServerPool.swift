/// The servers a client may connect to and the reconnect policy over them: round-robin, the server just
/// lost goes last, exponential backoff with jitter per server, and a cap on consecutive failed attempts.
///
/// Pure: the caller supplies randomness and time passes only through the waits it returns.
public struct ServerPool: Sendable {
    /// One known server.
    public struct Server: Sendable, Equatable {
        public var address: ServerAddress
        /// Consecutive failed attempts since the last successful connect.
        public var failedAttempts = 0
        /// Learned from a server's `connect_urls` rather than configured.
        public var isImplicit = false
    }

    /// Reconnect timing.
    public struct Policy: Sendable, Equatable {
        /// Wait before retrying a server that failed once; doubles with each further failure.
        public var reconnectWait: Duration = .seconds(2)
        /// Upper bound of the doubled wait.
        public var maxReconnectWait: Duration = .seconds(30)
        /// Up to this much random time is added to every wait so clients don't reconnect in lockstep.
        public var jitter: Duration = .milliseconds(100)
        /// Consecutive failed attempts per server before it is dropped; nil retries forever.
        public var maxAttemptsPerServer: Int? = 60

        public init() {}
    }

    /// What to do next.
    public enum Action: Equatable, Sendable {
        /// Try this server now.
        case connect(ServerAddress)
        /// Wait, then try this server.
        case wait(Duration, then: ServerAddress)
        /// No server is left to try.
        case giveUp
    }

    public private(set) var servers: [Server]
    public var policy: Policy

    /// Creates a pool over the configured servers (shuffled unless `randomize` is false).
    public init(_ addresses: [ServerAddress], policy: Policy = Policy(), randomize: Bool = true) {
        var unique: [ServerAddress] = []
        for a in addresses where !unique.contains(where: { $0.hostPort == a.hostPort }) { unique.append(a) }
        if randomize { unique.shuffle() }
        self.servers = unique.map { Server(address: $0) }
        self.policy = policy
    }

    /// The next step; `random` is a value in `0..<1` that scales the jitter.
    public mutating func nextAction(random: Double) -> Action {
        if let limit = policy.maxAttemptsPerServer {
            servers.removeAll { $0.failedAttempts > limit }
        }
        guard let server = servers.first else { return .giveUp }
        // Rotate so the next call offers the next server.
        servers.append(servers.removeFirst())
        if server.failedAttempts == 0 { return .connect(server.address) }
        return .wait(delay(afterFailures: server.failedAttempts, random: random), then: server.address)
    }

    /// The wait before the next try of a server that failed `failures` times in a row.
    public func delay(afterFailures failures: Int, random: Double) -> Duration {
        var wait = policy.reconnectWait
        for _ in 1..<max(failures, 1) {
            wait = wait * 2
            if wait >= policy.maxReconnectWait { break }
        }
        return min(wait, policy.maxReconnectWait) + policy.jitter * min(max(random, 0), 1)
    }

    /// An attempt to `address` failed.
    public mutating func attemptFailed(_ address: ServerAddress) {
        if let i = index(of: address) { servers[i].failedAttempts += 1 }
    }

    /// Connected to `address`: its failure count resets and the others are offered first on the next loss.
    public mutating func connected(_ address: ServerAddress) {
        guard let i = index(of: address) else { return }
        var s = servers.remove(at: i)
        s.failedAttempts = 0
        servers.append(s)
    }

    /// Merges the cluster's `connect_urls` (from INFO). Returns true when the set of servers changed.
    public mutating func learn(connectURLs: [String], current: ServerAddress?) -> Bool {
        let learned = connectURLs.compactMap { url -> ServerAddress? in
            guard var a = ServerAddress(parsing: url) else { return nil }
            if let current {
                a.scheme = current.scheme
                a.user = current.user
                a.password = current.password
            }
            return a
        }
        let before = servers.map(\.address.hostPort)
        let learnedKeys = Set(learned.map(\.hostPort))
        servers.removeAll { $0.isImplicit && !learnedKeys.contains($0.address.hostPort) && $0.address != current }
        for a in learned where index(of: a) == nil {
            servers.insert(Server(address: a, isImplicit: true), at: 0)
        }
        return before != servers.map(\.address.hostPort)
    }

    private func index(of address: ServerAddress) -> Int? {
        servers.firstIndex { $0.address.hostPort == address.hostPort }
    }
}
