import NATS

/// The egress policy applied to NATS servers a deploy names for its host services
/// (`host_services_config.nats_url`): the node then dials them on the deployer's behalf, so they pass the same
/// checks as the http host service's destinations, with the node's own servers always allowed.
extension EgressPolicy {
    /// This policy, with `servers` (the node's own) allowed whatever their address.
    func allowing(servers: [NATSServerEndpoint]) -> EgressPolicy {
        EgressPolicy(rules: rules + servers.map { .endpoint(host: $0.host, port: $0.port) })
    }

    /// The check a NATS client makes before every connect (first, reconnects, announced cluster members),
    /// on each address a name resolved to.
    var natsDialFilter: @Sendable (NATSClient.DialTarget) -> String? {
        let policy = self
        return { target in
            guard let address = IPAddress(bytes: target.address) else { return "not an IP address" }
            return policy.refusal(host: target.host, port: target.port, address: address).map {
                "host services: \($0)"
            }
        }
    }

    /// Why a deploy's server list is refused before anything is dialled: an entry that names no server, or a
    /// literal address the policy refuses (names are checked when resolved, at connect).
    func refusal(natsURLs text: String) -> String? {
        guard let endpoints = NATSServerEndpoint.list(text) else {
            return "host_services_config.nats_url \(text) is not a list of NATS URLs such as nats://host:4222"
        }
        for endpoint in endpoints {
            guard let address = IPAddress(endpoint.host) else { continue }
            if let refusal = refusal(host: endpoint.host, port: endpoint.port, address: address) {
                return "host_services_config.nats_url: \(refusal)"
            }
        }
        return nil
    }
}
