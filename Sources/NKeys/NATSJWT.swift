#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// The claims of a NATS JWT v2: the standard fields plus the `nats` object.
public struct JWTClaims: Sendable, Equatable {
    public var audience: String?
    /// Unix seconds after which the token is invalid.
    public var expires: Int64?
    /// `jti`: set by ``NATSJWT/encode(_:signedBy:)`` to the hash of the standard claims.
    public var id: String?
    /// Unix seconds.
    public var issuedAt: Int64
    /// The public key of the signer (`A…` for generic claims and user JWTs).
    public var issuer: String
    public var name: String?
    /// Unix seconds before which the token is invalid.
    public var notBefore: Int64?
    public var subject: String
    /// The `nats` object (generic fields, or the user/account claims).
    public var nats: JSONValue

    public init(
        subject: String, issuer: String, issuedAt: Int64 = Int64(Date().timeIntervalSince1970), name: String? = nil,
        audience: String? = nil, expires: Int64? = nil, notBefore: Int64? = nil, nats: JSONValue = .object([])
    ) {
        self.subject = subject
        self.issuer = issuer
        self.issuedAt = issuedAt
        self.name = name
        self.audience = audience
        self.expires = expires
        self.notBefore = notBefore
        self.nats = nats
    }

    /// Generic claims as Go's nats-io/jwt v2 writes them: `nats` holds `fields` (keys sorted, as a Go map is)
    /// plus `"version": 2`.
    public static func generic(
        subject: String, issuer: String, issuedAt: Int64 = Int64(Date().timeIntervalSince1970),
        fields: [String: JSONValue] = [:]
    ) -> JWTClaims {
        var all = fields
        all["version"] = .int(2)
        let nats = JSONValue.object(all.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return JWTClaims(subject: subject, issuer: issuer, issuedAt: issuedAt, nats: nats)
    }

    /// User claims (`nats.type = "user"`), in the field order of Go's jwt v2: permissions, limits, then type.
    /// Nil permission lists mean "no rule"; `-1` limits mean unlimited.
    public static func user(
        publicKey: String, name: String, account: String, issuerAccount: String? = nil,
        publishAllow: [String]? = nil, publishDeny: [String]? = nil,
        subscribeAllow: [String]? = nil, subscribeDeny: [String]? = nil,
        allowResponses: Bool = false, issuedAt: Int64 = Int64(Date().timeIntervalSince1970), expires: Int64? = nil
    ) -> JWTClaims {
        func permission(_ allow: [String]?, _ deny: [String]?) -> JSONValue {
            var p: [(String, JSONValue)] = []
            if let allow, !allow.isEmpty { p.append(("allow", .array(allow.map(JSONValue.string)))) }
            if let deny, !deny.isEmpty { p.append(("deny", .array(deny.map(JSONValue.string)))) }
            return .object(p)
        }
        var nats: [(String, JSONValue)] = [
            ("pub", permission(publishAllow, publishDeny)), ("sub", permission(subscribeAllow, subscribeDeny)),
        ]
        if allowResponses { nats.append(("resp", .object([("max", .int(1))]))) }
        nats += [("subs", .int(-1)), ("data", .int(-1)), ("payload", .int(-1))]
        if let issuerAccount { nats.append(("issuer_account", .string(issuerAccount))) }
        nats += [("type", .string("user")), ("version", .int(2))]
        return JWTClaims(
            subject: publicKey, issuer: account, issuedAt: issuedAt, name: name, expires: expires, nats: .object(nats))
    }

    /// The standard claims, in Go's field order, empty ones left out; `jti` is the hash of these without it.
    func standardFields(includingID: Bool) -> [(String, JSONValue)] {
        var f: [(String, JSONValue)] = []
        if let audience, !audience.isEmpty { f.append(("aud", .string(audience))) }
        if let expires, expires != 0 { f.append(("exp", .int(expires))) }
        if includingID, let id, !id.isEmpty { f.append(("jti", .string(id))) }
        if issuedAt != 0 { f.append(("iat", .int(issuedAt))) }
        if !issuer.isEmpty { f.append(("iss", .string(issuer))) }
        if let name, !name.isEmpty { f.append(("name", .string(name))) }
        if let notBefore, notBefore != 0 { f.append(("nbf", .int(notBefore))) }
        if !subject.isEmpty { f.append(("sub", .string(subject))) }
        return f
    }
}

/// Encoding, decoding and verification of NATS JWT v2 tokens (`{"typ":"JWT","alg":"ed25519-nkey"}`).
public enum NATSJWT {
    static let header = #"{"typ":"JWT","alg":"ed25519-nkey"}"#

    /// Signs `claims` with `key` (whose public key should be `claims.issuer`), setting `jti`.
    public static func encode(_ claims: JWTClaims, signedBy key: NKeyPair) throws(NKeyError) -> String {
        guard key.publicKey == claims.issuer else {
            throw NKeyError(.invalidSignature, "the signing key is not the issuer \(claims.issuer)")
        }
        var claims = claims
        claims.id = jti(for: claims)
        var fields = claims.standardFields(includingID: true)
        if case .object(let pairs) = claims.nats, !pairs.isEmpty { fields.append(("nats", claims.nats)) }
        let payload = JSONValue.object(fields).compactJSON
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(payload.utf8))
        let signature = try key.sign(Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// `jti`: base32 (no padding) of SHA-512/256 over the compact standard claims without `jti`.
    public static func jti(for claims: JWTClaims) -> String {
        let hashed = JSONValue.object(claims.standardFields(includingID: false)).compactJSON
        return Base32.encode(SHA512_256.hash(Array(hashed.utf8)))
    }

    /// Decodes a token and checks its signature against its issuer. Does not check time bounds: see
    /// ``verify(_:now:)``.
    public static func decode(_ token: String) throws(NKeyError) -> JWTClaims {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Base64URL.decode(parts[0]), let payload = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else { throw NKeyError(.invalidEncoding, "not a JWT (three base64url parts)") }
        guard let header = try? JSONValue.parse(headerBytes),  // not JSON: refused below
            let alg = header["alg"]?.stringValue, alg == "ed25519-nkey" || alg == "ed25519"
        else { throw NKeyError(.invalidEncoding, "JWT header is not ed25519-nkey") }
        guard let body = try? JSONValue.parse(payload) else {  // not JSON: refused below
            throw NKeyError(.invalidEncoding, "JWT claims are not JSON")
        }
        guard let issuer = body["iss"]?.stringValue, let subject = body["sub"]?.stringValue else {
            throw NKeyError(.invalidEncoding, "JWT claims lack iss or sub")
        }
        let verifier = try NKeyPair(publicKey: issuer)
        let signed = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard verifier.verify(signature, for: signed) else {
            throw NKeyError(.invalidSignature, "JWT signature does not match its issuer \(issuer)")
        }
        var claims = JWTClaims(
            subject: subject, issuer: issuer, issuedAt: body["iat"]?.intValue ?? 0, name: body["name"]?.stringValue,
            audience: body["aud"]?.stringValue, expires: body["exp"]?.intValue, notBefore: body["nbf"]?.intValue,
            nats: body["nats"] ?? .object([]))
        claims.id = body["jti"]?.stringValue
        return claims
    }

    /// Decodes, checks the signature, and checks `exp` and `nbf` against `now` (unix seconds).
    public static func verify(_ token: String, now: Int64 = Int64(Date().timeIntervalSince1970)) throws(NKeyError)
        -> JWTClaims
    {
        let claims = try decode(token)
        if let exp = claims.expires, exp != 0, now >= exp { throw NKeyError(.invalidSignature, "JWT expired") }
        if let nbf = claims.notBefore, nbf != 0, now < nbf { throw NKeyError(.invalidSignature, "JWT not yet valid") }
        return claims
    }
}
