/// A NATS credentials file: a user JWT and the user's seed in the decorated text format
/// (`-----BEGIN NATS USER JWT-----` … `-----BEGIN USER NKEY SEED-----` …).
public struct CredentialsFile: Sendable, Equatable {
    /// The user JWT.
    public var jwt: String
    /// The user seed (`SU…`). A secret: never log it.
    public var seed: String

    public init(jwt: String, seed: String) {
        self.jwt = jwt
        self.seed = seed
    }

    /// Parses the decorated format: the first framed block is the JWT, the second the seed.
    public init(parsing text: String) throws(NKeyError) {
        var blocks: [String] = []
        var inBlock = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingSpaces()
            if trimmed.hasPrefix("---") && trimmed.hasSuffix("---") {
                inBlock = trimmed.contains("BEGIN")
                continue
            }
            if inBlock && !trimmed.isEmpty {
                blocks.append(String(trimmed))
                inBlock = false
            }
        }
        guard blocks.count >= 2 else {
            throw NKeyError(.invalidCredentials, "credentials need a JWT block and a seed block")
        }
        self.init(jwt: blocks[0], seed: blocks[1])
        _ = try NKeyPair(seed: seed)
    }

    /// The key pair of the seed.
    public func keyPair() throws(NKeyError) -> NKeyPair { try NKeyPair(seed: seed) }

    /// The decorated text form, as `nsc` writes it.
    public var formatted: String {
        """
        -----BEGIN NATS USER JWT-----
        \(jwt)
        ------END NATS USER JWT------

        ************************* IMPORTANT *************************
        NKEY Seed printed below can be used to sign and prove identity.
        NKEYs are sensitive and should be treated as secrets.

        -----BEGIN USER NKEY SEED-----
        \(seed)
        ------END USER NKEY SEED------

        *************************************************************

        """
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}
