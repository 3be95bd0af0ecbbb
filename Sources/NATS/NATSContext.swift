import Foundation

/// A `nats` CLI context (NATS ADR-21): a named set of connection settings every NATS tool shares.
///
/// Contexts live in `$XDG_CONFIG_HOME/nats/context/<name>.json` (`~/.config/nats/…` when `XDG_CONFIG_HOME` is
/// unset); `nats context select` writes the selected one's name to `…/nats/context.txt`.
///
/// ```swift
/// let context = try NATSContext.load(named: "orders")  // nil: NATS_CONTEXT, else the selected context
/// let client = NATSClient(configuration: try context.configuration())
/// ```
public struct NATSContext: Sendable, Equatable {
    /// The context's name.
    public var name: String
    /// Its description.
    public var description: String?
    /// Server URLs (the file's comma-separated `url`).
    public var servers: [String]
    /// Authentication token.
    public var token: String?
    /// User name and password.
    public var user: String?
    public var password: String?
    /// A credentials file (user JWT and seed).
    public var credentials: String?
    /// An nkey seed file; with ``userJWT`` it signs for that JWT.
    public var nkey: String?
    /// A user JWT, used with the seed in ``nkey``.
    public var userJWT: String?
    /// TLS client certificate, key and the CA that signed the server's certificate (PEM files).
    public var certificate: String?
    public var key: String?
    public var certificateAuthority: String?
    /// TLS before the NATS handshake (servers with `handshake_first`).
    public var tlsFirst: Bool
    /// The prefix of reply inboxes (`_INBOX` when unset).
    public var inboxPrefix: String?
    /// The JetStream domain, or the JetStream API prefix, JetStream clients should use.
    public var jetStreamDomain: String?
    public var jetStreamAPIPrefix: String?

    /// Loads the context `name`; when `name` is nil, the one `NATS_CONTEXT` names, else the selected one.
    /// Returns nil when no name is given and none is selected (as the `nats` CLI does, connect without one).
    public static func load(
        named name: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(NATSError) -> NATSContext? {
        let directory = configDirectory(environment: environment)
        var chosen = name ?? environment["NATS_CONTEXT"].flatMap { $0.isEmpty ? nil : $0 }
        let selection = directory + "/context.txt"
        // No selection file is the normal case: the `nats` CLI then connects without a context.
        if chosen == nil, FileManager.default.fileExists(atPath: selection) {
            let selected: String
            do { selected = try String(contentsOfFile: selection, encoding: .utf8) } catch {
                throw NATSError(.invalidConfiguration, "cannot read the selected nats context from \(selection)")
            }
            let trimmed = selected.trimmingCharacters(in: .whitespacesAndNewlines)
            if !trimmed.isEmpty { chosen = trimmed }
        }
        guard let chosen else { return nil }
        return try load(file: try path(of: chosen, in: directory), name: chosen, environment: environment)
    }

    /// Reads one context file.
    public static func load(
        file: String, name: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(NATSError) -> NATSContext {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
            throw NATSError(
                .invalidConfiguration,
                "no nats context \"\(name)\" (\(file) cannot be read); `nats context ls` lists the contexts")
        }
        let contents: ContextFile
        do { contents = try JSONDecoder().decode(ContextFile.self, from: data) } catch {
            throw NATSError(.invalidConfiguration, "nats context \"\(name)\" (\(file)) is not valid JSON: \(error)")
        }
        return try NATSContext(name: name, file: contents, home: environment["HOME"])
    }

    /// A client configuration with this context's servers, authentication, TLS and inbox prefix.
    public func configuration() throws(NATSError) -> NATSClient.Configuration {
        var config = NATSClient.Configuration(servers: servers)
        config.auth = try auth()
        if let inboxPrefix { config.inboxPrefix = inboxPrefix }
        config.tls = tls
        return config
    }

    /// The context's authentication: a credentials file, a JWT with its seed, an nkey, a token, or a user.
    public func auth() throws(NATSError) -> NATSClient.Auth {
        if let credentials { return .credentialsFile(path: credentials) }
        if let nkey {
            let seed: String
            do {
                seed = try String(contentsOfFile: nkey, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw NATSError(.invalidCredentials, "nats context \"\(name)\": cannot read the nkey file \(nkey)")
            }
            if let userJWT { return .jwt(userJWT, seed: seed) }
            return .nkey(seed: seed)
        }
        if let token { return .token(token) }
        if let user { return .userPassword(user: user, password: password ?? "") }
        return .none
    }

    /// The context's TLS settings, nil when it names none.
    public var tls: NATSClient.TLS? {
        guard certificate != nil || certificateAuthority != nil || tlsFirst else { return nil }
        var tls = NATSClient.TLS(
            caFile: certificateAuthority, certificateFile: certificate, keyFile: key)
        tls.handshakeFirst = tlsFirst
        return tls
    }

    /// `$XDG_CONFIG_HOME/nats`, or `~/.config/nats`.
    static func configDirectory(environment: [String: String]) -> String {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/nats" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.config/nats"
    }

    /// The file of the context `name`; names are file names, never paths.
    static func path(of name: String, in directory: String) throws(NATSError) -> String {
        guard !name.isEmpty, !name.contains("/"), !name.contains(".."), !name.hasPrefix(".") else {
            throw NATSError(.invalidConfiguration, "\"\(name)\" is not a nats context name")
        }
        return directory + "/context/" + name + ".json"
    }
}

extension NATSContext {
    /// The file's fields (ADR-21). Keys this client does not use (a description, colour schemes, Windows
    /// certificate stores) are ignored; keys that would change where or how it connects and that it cannot
    /// honour are refused, never silently dropped.
    struct ContextFile: Decodable {
        var description, url, token, user, password, creds, nkey, cert, key, ca, nsc: String?
        var jetStreamDomain, jetStreamAPIPrefix, inboxPrefix, userJWT, socksProxy: String?
        var tlsFirst: Bool?

        enum CodingKeys: String, CodingKey {
            case description, url, token, user, password, creds, nkey, cert, key, ca, nsc
            case jetStreamDomain = "jetstream_domain"
            case jetStreamAPIPrefix = "jetstream_api_prefix"
            case inboxPrefix = "inbox_prefix"
            case userJWT = "user_jwt"
            case socksProxy = "socks_proxy"
            case tlsFirst = "tls_first"
        }
    }

    init(name: String, file: ContextFile, home: String?) throws(NATSError) {
        func given(_ value: String?) -> String? { value.flatMap { $0.isEmpty ? nil : $0 } }
        // Paths may start with `~`, as the `nats` CLI writes them.
        func path(_ value: String?) -> String? {
            guard let value = given(value) else { return nil }
            if value == "~" || value.hasPrefix("~/"), let home { return home + value.dropFirst() }
            return value
        }
        if let nsc = given(file.nsc) {
            throw NATSError(
                .invalidConfiguration,
                "nats context \"\(name)\" loads its settings from nsc (\(nsc)), which nex does not run; "
                    + "set url and creds in the context instead (`nats context edit \(name)`)")
        }
        if given(file.socksProxy) != nil {
            throw NATSError(
                .invalidConfiguration,
                "nats context \"\(name)\" connects through a SOCKS proxy, which this client does not support")
        }
        self.name = name
        description = given(file.description)
        servers = (given(file.url) ?? "nats://127.0.0.1:4222").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        token = given(file.token)
        user = given(file.user)
        password = given(file.password)
        credentials = path(file.creds)
        nkey = path(file.nkey)
        userJWT = given(file.userJWT)
        certificate = path(file.cert)
        key = path(file.key)
        certificateAuthority = path(file.ca)
        tlsFirst = file.tlsFirst ?? false
        inboxPrefix = given(file.inboxPrefix)
        jetStreamDomain = given(file.jetStreamDomain)
        jetStreamAPIPrefix = given(file.jetStreamAPIPrefix)
    }
}
