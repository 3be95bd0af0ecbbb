/// The server's `INFO`: identity, limits, auth requirements and the cluster's client URLs.
public struct ServerInfo: Codable, Sendable, Equatable {
    public var serverID: String
    public var serverName: String?
    public var version: String
    public var proto: Int?
    public var host: String?
    public var port: Int?
    public var headers: Bool?
    public var maxPayload: Int
    public var clientID: UInt64?
    public var clientIP: String?
    public var authRequired: Bool?
    public var tlsRequired: Bool?
    public var tlsVerify: Bool?
    public var tlsAvailable: Bool?
    /// Client URLs of the other servers in the cluster (gossiped).
    public var connectURLs: [String]?
    /// Set when the server entered lame duck mode and will shut down soon.
    public var lameDuckMode: Bool?
    /// Nonce to sign for nkey and JWT authentication.
    public var nonce: String?
    public var cluster: String?
    public var domain: String?
    public var jetStream: Bool?
    /// The server's curve public key, when it has one.
    public var xkey: String?

    public init(serverID: String, version: String, maxPayload: Int) {
        self.serverID = serverID
        self.version = version
        self.maxPayload = maxPayload
    }

    enum CodingKeys: String, CodingKey {
        case serverID = "server_id"
        case serverName = "server_name"
        case version, proto, host, port, headers
        case maxPayload = "max_payload"
        case clientID = "client_id"
        case clientIP = "client_ip"
        case authRequired = "auth_required"
        case tlsRequired = "tls_required"
        case tlsVerify = "tls_verify"
        case tlsAvailable = "tls_available"
        case connectURLs = "connect_urls"
        case lameDuckMode = "ldm"
        case nonce, cluster, domain
        case jetStream = "jetstream"
        case xkey
    }

    /// True when the server supports headers.
    public var supportsHeaders: Bool { headers ?? false }
}
