import Foundation
import NexModels
import NexSandbox

/// What a service's environment holds beyond the deploy's own: host-service settings, and the NATS servers it
/// was given, opened in its sandbox.
extension WorkloadManager {
    /// The variables that name the NATS servers a service is given: the only servers a sandboxed service can
    /// reach. Keys as the agent passes them on (upper-cased).
    static let serverVariables = ["NATS_URL", "NEX_HOSTSERVICES_NATS_SERVER"]

    /// Opens the servers named in ``serverVariables`` (comma-separated URLs) in the sandbox and rewrites
    /// each URL to the address the workload dials inside. Only servers `policy` allows are opened; the deploy
    /// was refused before for any other, and this check keeps it so on every path.
    static func openServers(
        in environment: [String: String], sandbox: any AgentSandbox, policy: SandboxServerPolicy
    ) async throws -> [String: String] {
        if let refusal = policy.refusal(for: environment) { throw refusal }
        var env = environment
        var endpoints: [NetworkEndpoint] = []
        var parsed: [(key: String, urls: [URLComponents])] = []
        for (key, value) in environment where serverVariables.contains(key.uppercased()) {
            let urls = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.map { text in
                URLComponents(string: text.contains("://") ? text : "nats://" + text)
            }
            // A value that names no server opens nothing (the sandbox has no other way out).
            guard urls.allSatisfy({ $0?.host?.isEmpty == false }) else { continue }
            let components = urls.compactMap { $0 }
            for url in components {
                let endpoint = NetworkEndpoint(host: url.host ?? "", port: url.port ?? 4222)
                guard policy.allows(NATSServerEndpoint(host: endpoint.host, port: endpoint.port)) else {
                    throw NexError(.unauthorized, "\(key) names \(endpoint), which this node's sandboxes may not reach")
                }
                if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
            }
            parsed.append((key, components))
        }
        guard !endpoints.isEmpty else { return env }
        let inside = try await sandbox.allowConnections(to: endpoints)
        for (key, urls) in parsed {
            env[key] = urls.map { url in
                var copy = url
                let endpoint = NetworkEndpoint(host: url.host ?? "", port: url.port ?? 4222)
                let mapped = inside[endpoints.firstIndex(of: endpoint) ?? 0]
                copy.host = mapped.host
                copy.port = mapped.port
                return copy.string ?? ""
            }.joined(separator: ",")
        }
        return env
    }

    /// The deploy's environment plus host-service connection settings for services that want them
    /// (the deploy's own `host_services_config` over the node's).
    static func environment(for deploy: ValidatedDeploy, config: NodeConfiguration) -> [String: String] {
        var env = deploy.environment
        let node = config.hostServicesConfig?.nats
        let mine = deploy.request.hostServicesConfig
        let settings = [
            ("NEX_HOSTSERVICES_NATS_SERVER", mine?.natsURL ?? node?.natsURL),
            ("NEX_HOSTSERVICES_NATS_USER_JWT", mine?.natsUserJWT ?? node?.natsUserJWT),
            ("NEX_HOSTSERVICES_NATS_USER_SEED", mine?.natsUserSeed ?? node?.natsUserSeed),
        ]
        for case (let key, let value?) in settings where env[key] == nil { env[key] = value }
        return env
    }
}
