public import NATSProtocol
public import NIOSSL

extension NATSClient {
    /// How the client connects and behaves. Every field has a documented default.
    public struct Configuration: Sendable {
        /// Servers to connect to (`nats://`, `tls://`, `host:port`). Defaults to `NATS_URL` or `nats://127.0.0.1:4222`.
        public var servers: [String]
        /// Connection name shown by the server's monitoring.
        public var name: String?
        /// Receive our own publishes on matching subscriptions.
        public var echo = true
        /// Ask the server to `+OK` every operation (slow; for debugging).
        public var verbose = false
        /// Ask the server for strict checking of subjects and operations.
        public var pedantic = false
        /// Shuffle the server list before connecting.
        public var randomizeServers = true
        /// Keep retrying the initial connect as if it were a reconnect.
        public var retryOnFailedConnect = false
        /// Timeout for one TCP connect + TLS + INFO/CONNECT handshake.
        public var connectTimeout: Duration = .seconds(2)
        /// Reconnect after losing the connection.
        public var allowReconnect = true
        /// A connected stream socket to speak NATS on instead of dialing `servers` (for instance one a parent
        /// process handed over, with a relay to the server behind it). The client takes ownership and uses it
        /// once: when that connection ends there is nothing to reconnect to. `servers` still names the server
        /// (for TLS names and logs).
        public var connectedSocket: Int32?
        /// Reconnect timing and limits.
        public var reconnect = ServerPool.Policy()
        /// Bytes of publishes kept while disconnected; more is an error (``NATSError/Code/reconnectBufferExceeded``).
        public var reconnectBufferSize = 8 << 20
        /// Interval between keep-alive PINGs.
        public var pingInterval: Duration = .seconds(120)
        /// Unanswered PINGs before the connection is declared stale and reconnected.
        public var maxPingsOutstanding = 2
        /// Publishes wait once this many bytes are queued for the socket (backpressure).
        public var maxPendingOutboundBytes = 2 << 20
        /// Default limit of buffered messages per subscription before it is a slow consumer.
        public var subscriptionPendingMessages = 512 * 1024
        /// Default limit of buffered payload bytes per subscription before it is a slow consumer.
        public var subscriptionPendingBytes = 64 << 20
        /// Prefix of reply subjects for requests (`<prefix>.<nuid>.<token>`).
        public var inboxPrefix = "_INBOX"
        /// Default timeout of ``NATSClient/request(_:to:headers:timeout:)``.
        public var requestTimeout: Duration = .seconds(5)
        /// The longest a lone request's caller keeps its thread waiting for the reply before it parks (to be
        /// woken by the event loop). Waiting in place spares a thread wake-up, the larger part of a fast
        /// round trip, at the cost of the CPU it spends yielding meanwhile; it applies only while replies have
        /// been coming within half of this, to fewer callers than half the cores at a time, never on an event
        /// loop (a main-actor caller waits on the main thread). Capped at 5 ms; `.zero` turns it off.
        public var replyPollLimit: Duration = .milliseconds(1)
        /// Tests only: every request made off an event loop polls for its reply until it ends (see
        /// `RequestMux.pollingForced`).
        var replyPollForced = false
        /// Authentication.
        public var auth = Auth.none
        /// TLS settings; nil uses TLS only when the URL is `tls://` or the server requires it.
        public var tls: TLS?
        /// How long ``NATSClient/drain()`` may take before the connection is closed anyway.
        public var drainTimeout: Duration = .seconds(30)
        /// Asked right before every TCP connect, for each address a server's name resolved to (the first
        /// connect, reconnects, and servers the cluster announced alike): return nil to allow the address, or
        /// why it is refused. A client that must never reach some addresses (a host that connects where its
        /// users say) checks here, after resolution, so a name cannot smuggle in an address a check of the URL
        /// would have refused. Nil allows every address.
        public var dialFilter: (@Sendable (DialTarget) -> String?)?

        /// Creates a configuration for the given servers, or `NATS_URL` when empty.
        public init(servers: [String] = []) {
            self.servers = Self.servers(servers, environment: getenv("NATS_URL").map { String(cString: $0) })
        }

        /// `given`, else the comma-separated `NATS_URL` value, else the local default.
        static func servers(_ given: [String], environment natsURL: String?) -> [String] {
            if !given.isEmpty { return given }
            if let natsURL, !natsURL.isEmpty { return natsURL.split(separator: ",").map { String($0) } }
            return ["nats://127.0.0.1:4222"]
        }
    }

    /// One address the client is about to dial, as ``Configuration/dialFilter`` sees it.
    public struct DialTarget: Sendable {
        /// The host as the server URL names it (a name or a literal address).
        public var host: String
        /// The server's port.
        public var port: Int
        /// The resolved address: 4 bytes (IPv4) or 16 (IPv6), in network order.
        public var address: [UInt8]

        /// A dial target (for tests of a filter).
        public init(host: String, port: Int, address: [UInt8]) {
            self.host = host
            self.port = port
            self.address = address
        }
    }

    /// Ways to authenticate.
    public enum Auth: Sendable {
        /// No credentials (or those in the server URLs).
        case none
        /// A token.
        case token(String)
        /// A user and password.
        case userPassword(user: String, password: String)
        /// An nkey seed (`SU…`); its public key is sent and the server nonce signed.
        case nkey(seed: String)
        /// A credentials file with a user JWT and seed (operator mode).
        case credentialsFile(path: String)
        /// A user JWT and its seed, given directly.
        case jwt(String, seed: String)
    }

    /// TLS settings.
    public struct TLS: Sendable {
        /// PEM file of the CA that signed the server certificate; nil uses the system roots.
        public var caFile: String?
        /// PEM files of a client certificate and its key, for servers that verify clients.
        public var certificateFile: String?
        public var keyFile: String?
        /// Start TLS before the server's INFO (the server's `handshake_first`).
        public var handshakeFirst = false
        /// Name to verify the server certificate against; defaults to the URL's host.
        public var serverName: String?
        /// Skip certificate verification. Only for tests.
        public var insecureSkipVerify = false

        public init(
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, handshakeFirst: Bool = false
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.handshakeFirst = handshakeFirst
        }

        func makeContext() throws -> NIOSSLContext {
            var config = TLSConfiguration.makeClientConfiguration()
            if let caFile { config.trustRoots = .file(caFile) }
            if let certificateFile, let keyFile {
                config.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
                config.privateKey = .file(keyFile)
            }
            if insecureSkipVerify { config.certificateVerification = .none }
            return try NIOSSLContext(configuration: config)
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif
