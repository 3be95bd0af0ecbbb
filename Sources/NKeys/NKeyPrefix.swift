/// The role of a key, encoded as the first character of its text form.
public enum NKeyPrefix: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// `A…`: an account.
    case account = 0  // 0 << 3
    /// `C…`: a cluster.
    case cluster = 16  // 2 << 3
    /// `O…`: an operator.
    case `operator` = 112  // 14 << 3
    /// `N…`: a server (Nex nodes use server keys as their identity).
    case server = 104  // 13 << 3
    /// `P…`: a raw private key.
    case `private` = 120  // 15 << 3
    /// `S…`: a seed (the first character of every seed).
    case seed = 144  // 18 << 3
    /// `U…`: a user.
    case user = 160  // 20 << 3
    /// `X…`: a curve (X25519) key, used for sealing with xkeys.
    case curve = 184  // 23 << 3

    /// The prefixes a public key may carry.
    public static let publicKeyPrefixes: [NKeyPrefix] = [.account, .cluster, .operator, .server, .user, .curve]

    public var description: String {
        switch self {
        case .account: "account"
        case .cluster: "cluster"
        case .operator: "operator"
        case .server: "server"
        case .private: "private"
        case .seed: "seed"
        case .user: "user"
        case .curve: "curve"
        }
    }
}
