import Foundation
import NIOCore
import NexModels
import NexOCI
import NexSandbox
import Synchronization

/// Pulls container images for deploys, within the node's registry policy, into the node's image cache; and
/// turns a pulled image into what an agent runs.
///
/// A deploy is a tenant's request: the node pulls only from registries in `oci_registries`, and from public ones
/// through the egress policy (global addresses only, on every connection, redirects and token services
/// included).
final class ImageService: Sendable {
    let store: ImageStore
    private let registries: [String: NodeConfiguration.OCIRegistryConfig]
    private let clients = Mutex<[String: RegistryClient]>([:])

    init(home: String, config: NodeConfiguration) throws(OCIError) {
        let cacheBytes = Int64(config.ociCacheLimitMB) << 20
        store = try ImageStore(
            root: home + "/images", limitBytes: cacheBytes, keepsSetID: config.ociKeepSetID,
            mountPoints: ImageRoot.mountPoints,
            maxImageBytes: min(cacheBytes, config.nodeLimits.maxWorkloadBytes ?? .max))
        var canonical: [String: NodeConfiguration.OCIRegistryConfig] = [:]
        for (key, entry) in config.ociRegistries { canonical[Self.canonical(key)] = entry }
        registries = canonical
    }

    /// Pulls the image `location` names (a cache hit by digest asks no registry), refusing one that resolves to
    /// another digest than `digest`. The image comes back pinned for `workloadID`: ``release(_:workloadID:)`` when
    /// that workload ends.
    func pull(
        _ location: WorkloadLocation, digest: OCIDigest, workloadID: String, restoring: Bool = false,
        platform: Platform = .current
    ) async throws(NexError) -> PulledImage {
        var reference: ImageReference
        do {
            reference = try ImageReference(parsing: location.description)
        } catch {
            throw NexError(.invalidRequest, "\(error)")
        }
        // A restart runs what was accepted: by digest, from the cache, without asking for the tag again.
        if restoring {
            reference.tag = nil
            reference.digest = digest
        }
        let client = try self.client(for: reference.registry)
        do {
            return try await store.pull(
                reference, expecting: digest, platform: platform, client: client, holder: workloadID)
        } catch {
            throw NexError(
                Self.code(of: error), "cannot pull \(reference): \(error)", isTransient: Self.isTransient(error))
        }
    }

    /// The workload `workloadID` no longer runs `manifestDigest`: its image may be evicted by the next pull that
    /// needs room (not now: a stopping node keeps what its recorded workloads restart from). A second release by
    /// one workload changes nothing.
    func release(_ manifestDigest: OCIDigest, workloadID: String) async {
        await store.unpin(manifestDigest, holder: workloadID)
    }

    /// The client of one registry: its entry's settings, connections where the policy allows.
    func client(for registry: String) throws(NexError) -> RegistryClient {
        if let client = clients.withLock({ $0[registry] }) { return client }
        let own = Self.canonical(registry)
        let entry = registries[own]
        if entry == nil, let refusal = Self.unlistedRefusal(registry) { throw refusal }
        let settings = RegistryClient.Settings(
            insecure: entry?.insecure ?? false, username: entry?.username, password: entry?.password,
            caFile: entry?.caFile)
        // A listed registry may send the node to another listed one (its token service, a blob store); an
        // unlisted one reaches global addresses only, wherever it redirects.
        let trusted: Set<String> = entry == nil ? [] : Set(registries.keys)
        let client: RegistryClient
        do {
            client = try RegistryClient(registry: registry, settings: settings) { host, port in
                try await Self.addresses(host: host, port: port, trusted: trusted)
            }
        } catch {
            throw NexError(.invalidRequest, "\(error)")
        }
        clients.withLock { $0[registry] = client }
        return client
    }

    /// Where a connection to `host` may go: anywhere for a registry in `oci_registries` (the operator named it),
    /// else global addresses only.
    static func addresses(host: String, port: Int, trusted: Set<String>) async throws -> [SocketAddress] {
        let named = trusted.contains(canonical("\(host):\(port)"))
        let resolved = try await HTTPEgressClient.systemResolver(host, port)
        var allowed: [SocketAddress] = []
        var refusal: EgressRefusal?
        for address in resolved {
            if !named, let refused = EgressPolicy.globalOnly.refusal(host: host, port: port, address: address) {
                refusal = refusal ?? refused
                continue
            }
            allowed.append(try SocketAddress(packedIPAddress: ByteBuffer(bytes: address.bytes), port: port))
        }
        guard !allowed.isEmpty else {
            throw OCIError.refused(
                "\(host):\(port)",
                (refusal.map { "\($0)" } ?? "it resolves to no address")
                    + "; an operator lets the node pull from it by naming it in the node's oci_registries")
        }
        return allowed
    }

    /// A registry's key as entries are compared: lowercased, and `HOST:443` written `HOST` (what a reference
    /// without a port means).
    static func canonical(_ registry: String) -> String {
        let lowered = registry.lowercased()
        return lowered.hasSuffix(":443") ? String(lowered.dropLast(4)) : lowered
    }

    /// Why an unlisted registry is refused before any connection: a literal loopback or private address, or
    /// `localhost`. (A name is checked on each address it resolves to.)
    private static func unlistedRefusal(_ registry: String) -> NexError? {
        var host = registry
        if let colon = host.lastIndex(of: ":"), !host.hasSuffix("]") { host = String(host[..<colon]) }
        let local = host == "localhost" || IPAddress(host).map { AddressScope(of: $0) != .global } ?? false
        guard local else { return nil }
        return NexError(
            .unauthorized,
            "the node does not pull from \(registry): a loopback or private registry needs an entry in the node's "
                + "oci_registries")
    }

    private static func code(of error: OCIError) -> NexError.Code {
        switch error {
        case .digestMismatch, .sizeMismatch: .integrity
        case .refused, .unauthorized: .unauthorized
        case .notFound, .platformMissing, .badReference, .badDigest, .escapes, .badArchive, .badManifest,
            .badCompression, .badPlatform:
            .invalidRequest
        case .tooLarge: .limitExceeded
        case .storage: .storage
        case .transport, .registry, .stopped: .unavailable
        }
    }

    private static func isTransient(_ error: OCIError) -> Bool {
        if case .transport = error { return true }
        if case .stopped = error { return true }
        if case .registry(let status, _) = error { return status >= 500 || status == 429 }
        return false
    }
}
