/// Where the HTTP host service may connect on a function's behalf.
///
/// Global addresses are allowed. Loopback, link-local, private, multicast, unspecified and reserved ones are
/// refused unless the operator's allow-list (`host_services_config.services.http.config.allow`) names them, so a
/// function on a shared node cannot reach the node's loopback ports, private neighbours or a cloud metadata
/// service. (The node's own global addresses are global: a service bound to them is reachable like any other.)
/// The check runs on every address a name resolves to and on every redirect, right before the connection.
struct EgressPolicy: Sendable, Equatable {
    /// One allow-list entry.
    enum Rule: Sendable, Equatable {
        /// Any port at an address in this network (`10.1.0.0/16`, `127.0.0.1`, `fd00::/8`).
        case network(IPAddress, prefixLength: Int)
        /// One host (a name as the URL spells it, or a literal address) at one port (`localhost:8080`).
        case endpoint(host: String, port: Int)
    }

    /// The configuration key of the allow-list: entries separated by commas or spaces.
    static let allowKey = "allow"
    static let configPath = "host_services_config.services.http.config.\(allowKey)"

    let rules: [Rule]

    /// No allow-list: global addresses only.
    static let globalOnly = EgressPolicy(rules: [])

    init(rules: [Rule]) { self.rules = rules }

    /// Parses an allow-list such as `"127.0.0.1/32, localhost:8080, [::1]:9000"`.
    init(allowList: String) throws(EgressPolicyError) {
        let entries = allowList.split { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\t" }
        rules = try entries.map { entry throws(EgressPolicyError) in try Self.rule(String(entry)) }
    }

    /// Parses the service's `config` map (only `allow` is known).
    init(config: [String: String]?) throws(EgressPolicyError) {
        for key in (config ?? [:]).keys where key != Self.allowKey {
            throw EgressPolicyError(
                entry: key, problem: "is not a setting of the http host service (only \(Self.allowKey) is)")
        }
        try self.init(allowList: config?[Self.allowKey] ?? "")
    }

    private static func rule(_ entry: String) throws(EgressPolicyError) -> Rule {
        if let slash = entry.firstIndex(of: "/") {
            guard let address = IPAddress(entry[..<slash]), let length = Int(entry[entry.index(after: slash)...]),
                length >= 0, length <= address.bytes.count * 8
            else { throw EgressPolicyError(entry: entry, problem: "is not a CIDR such as 10.1.0.0/16 or fd00::/8") }
            return .network(address, prefixLength: length)
        }
        if let address = IPAddress(entry) { return .network(address, prefixLength: address.bytes.count * 8) }
        guard let colon = entry.lastIndex(of: ":"), let port = Int(entry[entry.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw EgressPolicyError(
                entry: entry, problem: "is neither a CIDR (10.1.0.0/16), an address, nor host:port (localhost:8080)")
        }
        var host = String(entry[..<colon]).lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw EgressPolicyError(entry: entry, problem: "names no host") }
        return .endpoint(host: host, port: port)
    }

    /// Nil when a connection to `address` for the URL's `host` and `port` is allowed; else why not.
    func refusal(host: String, port: Int, address: IPAddress) -> EgressRefusal? {
        let scope = AddressScope(of: address)
        guard scope != .global else { return nil }
        let host = host.lowercased()
        for rule in rules {
            switch rule {
            case .network(let network, let length):
                if address.hasPrefix(network, length: length) { return nil }
                if let inner = address.embeddedIPv4, inner.hasPrefix(network, length: length) { return nil }
            case .endpoint(let allowedHost, let allowedPort):
                guard allowedPort == port else { continue }
                if allowedHost == host || IPAddress(allowedHost) == address { return nil }
            }
        }
        return EgressRefusal(host: host, port: port, address: address, scope: scope)
    }
}

/// An allow-list entry that cannot be read; the node refuses to start with it.
struct EgressPolicyError: Error, CustomStringConvertible {
    let entry: String
    let problem: String
    var description: String { "\(EgressPolicy.configPath): \"\(entry)\" \(problem)" }
}

/// A destination the policy refused, with the reason and the fix.
struct EgressRefusal: Error, Equatable, CustomStringConvertible {
    let host: String
    let port: Int
    let address: IPAddress
    let scope: AddressScope

    var description: String {
        let at = host == address.description || "[\(address)]" == host ? "\(address)" : "\(host) (\(address))"
        let cidr = address.isIPv4 ? "\(address)/32" : "\(address)/128"
        return "refused to connect to \(at) port \(port): \(address) is \(scope), which functions may not reach; "
            + "an operator can allow it in \(EgressPolicy.configPath) (\(cidr) or \(host):\(port))"
    }
}
