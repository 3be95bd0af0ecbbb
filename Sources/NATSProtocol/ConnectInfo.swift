/// The client's `CONNECT` options.
public struct ConnectInfo: Codable, Sendable, Equatable {
    public var verbose = false
    public var pedantic = false
    public var tlsRequired = false
    public var name: String?
    public var lang = "swift"
    public var version = "0.1.0"
    public var protocolVersion = 1
    public var echo = true
    public var headers = true
    public var noResponders = true
    public var user: String?
    public var pass: String?
    public var authToken: String?
    public var jwt: String?
    public var nkey: String?
    /// The server nonce signed with the client's key (base64url).
    public var sig: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case verbose, pedantic, name, lang, version, echo, headers, user, pass, jwt, nkey, sig
        case tlsRequired = "tls_required"
        case protocolVersion = "protocol"
        case noResponders = "no_responders"
        case authToken = "auth_token"
    }
}
