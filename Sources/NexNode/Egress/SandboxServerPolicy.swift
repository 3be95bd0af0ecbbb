import Foundation
import NexModels

/// A NATS server's address as a URL or `host:port` names it (`nats://h:4222`, `tls://h`, `h:4222`, `[::1]:4222`):
/// the host lower-cased without brackets, the port 4222 unless given.
struct NATSServerEndpoint: Hashable, Sendable, CustomStringConvertible {
    var host: String
    var port: Int

    /// `host` as a URL gives it (IPv6 in brackets or not, any case).
    init(host: String, port: Int) {
        var host = host.lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
    }

    init?(_ text: some StringProtocol) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty,
            let url = URLComponents(string: trimmed.contains("://") ? trimmed : "nats://" + trimmed),
            let host = url.host, !host.isEmpty
        else { return nil }
        let port = url.port ?? 4222
        guard (1...65_535).contains(port) else { return nil }
        self.init(host: host, port: port)
    }

    /// The endpoints of a comma-separated server list; nil when an entry names no server.
    static func list(_ text: String) -> [NATSServerEndpoint]? {
        var endpoints: [NATSServerEndpoint] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let endpoint = NATSServerEndpoint(entry) else { return nil }
            endpoints.append(endpoint)
        }
        return endpoints.isEmpty ? nil : endpoints
    }

    var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// The NATS servers a sandboxed service may be given a network path to: the node's own servers, the server
/// its `host_services_config.nats.nats_url` names, and `sandbox_nats_servers`. A deploy whose
/// ``WorkloadManager/serverVariables`` name anything else is refused, and no forwarder dials it: the sandbox
/// has no other way out, so a deployer cannot turn the node into a path to its loopback ports, its neighbours
/// or a metadata service.
struct SandboxServerPolicy: Sendable, Equatable {
    let allowed: [NATSServerEndpoint]

    /// `nodeServers`: the URLs of the node's own NATS connection.
    init(nodeServers: [String], config: NodeConfiguration) {
        var allowed: [NATSServerEndpoint] = []
        let named = nodeServers + config.sandboxNATSServers + [config.hostServicesConfig?.nats?.natsURL ?? ""]
        for text in named {
            for endpoint in NATSServerEndpoint.list(text) ?? [] where !allowed.contains(endpoint) {
                allowed.append(endpoint)
            }
        }
        self.allowed = allowed
    }

    /// Nil when every server the environment's server variables name is allowed; else the refusal. A value
    /// that cannot be read as a list of servers is refused too: what the forwarder would make of it must not
    /// differ from what was checked.
    func refusal(for environment: [String: String]) -> NexError? {
        for (key, value) in environment where WorkloadManager.serverVariables.contains(key.uppercased()) {
            if value.trimmingCharacters(in: .whitespaces).isEmpty { continue }  // names no server: opens none
            guard let endpoints = NATSServerEndpoint.list(value) else {
                return NexError(
                    .invalidRequest,
                    "\(key) is not a list of NATS servers (such as nats://host:4222,nats://other:4222): \(value)")
            }
            for endpoint in endpoints where !allowed.contains(endpoint) {
                return NexError(
                    .unauthorized,
                    "\(key) names \(endpoint), which this node's sandboxes may not reach: a sandboxed service may "
                        + "be given only \(allowedText) (the node's own servers; an operator can add more in "
                        + "sandbox_nats_servers)")
            }
        }
        return nil
    }

    /// Whether a forwarder may dial `endpoint`.
    func allows(_ endpoint: NATSServerEndpoint) -> Bool { allowed.contains(endpoint) }

    private var allowedText: String {
        allowed.isEmpty ? "no server" : allowed.map(\.description).joined(separator: ", ")
    }
}
