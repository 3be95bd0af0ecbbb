import NATS
import NexModels

/// Which NATS connection a function's host calls use (wire contract §4, §6): the one its deploy names in
/// `host_services_config`, else the one the node's `host_services_config.nats` names, else the node's own.
/// One broker per distinct connection, opened on first use and closed when no running workload needs it.
///
/// A server a deploy names is dialled on the deployer's behalf, so its every address passes ``deployEgress``
/// (the http host service's policy, with the node's own servers allowed) right before each connect.
actor HostServiceConnections {
    /// A connection as a deploy or the node's configuration names it.
    struct Target: Hashable, Sendable {
        var url: String
        var jwt: String?
        var seed: String?
        /// Named by a deploy (checked against ``HostServiceConnections/deployEgress``), not by the operator.
        var fromDeploy: Bool
    }

    private let nodeBroker: HostServicesBroker
    private let nodeTarget: Target?
    private let subjects: SubjectPolicy
    private let metrics: NodeMetrics?
    private let disabled: Set<String>
    private let egress: EgressPolicy
    /// Where deploy-named servers may be: ``egress`` plus the node's own servers.
    let deployEgress: EgressPolicy
    private var opened: [Target: HostServicesBroker] = [:]
    private var opening: [Target: Task<HostServicesBroker, any Error>] = [:]
    /// Workload ids by the connection they use.
    private var users: [Target: Set<String>] = [:]
    /// ``closeAll()`` ran: nothing opens any more.
    private var closed = false

    /// `client` is the node's own connection; `config` the node's `host_services_config`.
    init(
        client: NATSClient, config: NodeConfiguration.HostServices?, subjects: SubjectPolicy,
        metrics: NodeMetrics? = nil
    ) {
        self.subjects = subjects
        self.metrics = metrics
        self.disabled = Set((config?.services ?? [:]).filter { !$0.value.enabled }.keys)
        let egress = config?.egressPolicy ?? .globalOnly
        self.egress = egress
        let own = client.configuration.servers.compactMap { NATSServerEndpoint($0) }
        self.deployEgress = egress.allowing(servers: own)
        self.nodeBroker = HostServicesBroker(
            client: client, subjects: subjects, metrics: metrics, disabled: disabled, egress: egress)
        self.nodeTarget = config?.nats.flatMap { nats in
            nats.natsURL.map { Target(url: $0, jwt: nats.natsUserJWT, seed: nats.natsUserSeed, fromDeploy: false) }
        }
    }

    /// The broker for a workload whose deploy carried `deploy` (nil: none).
    func broker(workloadID: String, deploy: HostServicesConfig?) async throws -> HostServicesBroker {
        let target =
            deploy?.natsURL.map {
                Target(url: $0, jwt: deploy?.natsUserJWT, seed: deploy?.natsUserSeed, fromDeploy: true)
            } ?? nodeTarget
        guard let target else { return nodeBroker }
        guard !closed else { throw NexError(.unavailable, "the node is stopping") }
        users[target, default: []].insert(workloadID)
        if let broker = opened[target] { return broker }
        if let pending = opening[target] { return try await pending.value }
        let (subjects, metrics, disabled, egress) = (self.subjects, self.metrics, self.disabled, self.egress)
        let filter = target.fromDeploy ? deployEgress.natsDialFilter : nil
        let task = Task { () throws -> HostServicesBroker in
            var configuration = Self.configuration(for: target)
            configuration.dialFilter = filter
            let client = NATSClient(configuration: configuration)
            try await client.connect()
            return HostServicesBroker(
                client: client, subjects: subjects, metrics: metrics, disabled: disabled, egress: egress)
        }
        opening[target] = task
        let broker: HostServicesBroker
        do {
            broker = try await task.value
            opening[target] = nil
        } catch {
            opening[target] = nil
            throw error
        }
        // Every workload that wanted it may have ended (or the node stopped) while it opened: then nobody
        // would ever close it.
        guard !closed, users[target]?.isEmpty == false else {
            await broker.client.close()
            throw NexError(.unavailable, "the workload ended while its host services connection opened")
        }
        opened[target] = broker
        return broker
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
        closed = true
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
