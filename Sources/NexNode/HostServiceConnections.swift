import NATS
import NexModels

/// Which NATS connection a function's host calls use (wire contract §4, §6): the one its deploy names in
/// `host_services_config`, else the one the node's `host_services_config.nats` names, else the node's own.
/// One broker per distinct connection, opened on first use and closed when no running workload needs it.
actor HostServiceConnections {
    /// A connection as a deploy or the node's configuration names it.
    struct Target: Hashable, Sendable {
        var url: String
        var jwt: String?
        var seed: String?
    }

    private let nodeBroker: HostServicesBroker
    private let nodeTarget: Target?
    private let denyPublish: [String]
    private let disabled: Set<String>
    private let egress: EgressPolicy
    private var opened: [Target: HostServicesBroker] = [:]
    private var opening: [Target: Task<HostServicesBroker, any Error>] = [:]
    /// Workload ids by the connection they use.
    private var users: [Target: Set<String>] = [:]

    /// `client` is the node's own connection; `config` the node's `host_services_config`.
    init(client: NATSClient, config: NodeConfiguration.HostServices?, denyPublish: [String]) {
        self.denyPublish = denyPublish
        self.disabled = Set((config?.services ?? [:]).filter { !$0.value.enabled }.keys)
        self.egress = config?.egressPolicy ?? .globalOnly
        self.nodeBroker = HostServicesBroker(
            client: client, denyPublish: denyPublish, disabled: disabled, egress: egress)
        self.nodeTarget = config?.nats.flatMap { nats in
            nats.natsURL.map { Target(url: $0, jwt: nats.natsUserJWT, seed: nats.natsUserSeed) }
        }
    }

    /// The broker for a workload whose deploy carried `deploy` (nil: none).
    func broker(workloadID: String, deploy: HostServicesConfig?) async throws -> HostServicesBroker {
        let target =
            deploy?.natsURL.map { Target(url: $0, jwt: deploy?.natsUserJWT, seed: deploy?.natsUserSeed) } ?? nodeTarget
        guard let target else { return nodeBroker }
        users[target, default: []].insert(workloadID)
        if let broker = opened[target] { return broker }
        if let pending = opening[target] { return try await pending.value }
        let (denyPublish, disabled, egress) = (self.denyPublish, self.disabled, self.egress)
        let task = Task { () throws -> HostServicesBroker in
            let client = NATSClient(configuration: Self.configuration(for: target))
            try await client.connect()
            return HostServicesBroker(client: client, denyPublish: denyPublish, disabled: disabled, egress: egress)
        }
        opening[target] = task
        do {
            let broker = try await task.value
            opening[target] = nil
            opened[target] = broker
            return broker
        } catch {
            opening[target] = nil
            throw error
        }
    }

    /// A workload ended: closes its connection when no other running workload uses it.
    func release(workloadID: String) async {
        for (target, ids) in users where ids.contains(workloadID) {
            users[target]?.remove(workloadID)
            guard users[target]?.isEmpty == true else { continue }
            users[target] = nil
            if let broker = opened.removeValue(forKey: target) { await broker.client.close() }
        }
    }

    /// Closes every connection opened for host services (the node's own is not ours to close).
    func closeAll() async {
        let brokers = Array(opened.values)
        opened.removeAll()
        users.removeAll()
        for broker in brokers { await broker.client.close() }
    }

    static func configuration(for target: Target) -> NATSClient.Configuration {
        var config = NATSClient.Configuration(servers: [target.url])
        config.name = "nex-host-services"
        config.connectTimeout = .seconds(4)
        switch (target.jwt, target.seed) {
        case (let jwt?, let seed?): config.auth = .jwt(jwt, seed: seed)
        case (nil, let seed?): config.auth = .nkey(seed: seed)
        default: break
        }
        return config
    }
}
