/// `$NEX.DEPLOY.<ns>.<node>` request.
public struct DeployRequest: Codable, Sendable, Equatable {
    public var argv: [String]?
    public var description: String?
    /// Hex SHA-256 of the artifact. Go clients send null: the signed `nats.hash` in `workloadJWT` counts.
    public var hash: String?
    /// Where the artifact is: `nats://BUCKET/key`.
    public var location: WorkloadLocation
    public var essential: Bool?
    /// Base64 (standard) of the xkey-sealed JSON `{"KEY":"value"}`.
    public var environment: String?
    public var id: String?
    public var jsDomain: String?
    public var retryCount: Int?
    public var retriedAt: String?
    /// The `X…` key the environment was sealed with.
    public var senderPublicKey: String
    public var targetNode: String
    public var triggerSubjects: [String]?
    /// Functions only: subject, stream, key-value, object-store and schedule triggers (``WorkloadTrigger``).
    /// An extension of this implementation beside `trigger_subjects`; Nex has no such field.
    public var triggers: [WorkloadTrigger]?
    public var hostServicesConfig: HostServicesConfig?
    public var workloadName: String
    /// The issuer-signed JWT: `sub` = request id, `nats.name`, `nats.hash`.
    public var workloadJWT: String
    /// `native`, `v8` or `wasm`.
    public var type: String
    /// Functions only: how many triggers run at once on the node, each on its own engine instance (default:
    /// the node's CPU count). An extension of this implementation; Nex has no such field.
    public var maxConcurrency: Int?
    /// The id of a workload of the same name, namespace and issuer on the target node that the deployer stops
    /// once this one runs: the node then does not refuse this deploy as a duplicate of it (it still counts
    /// toward `max_workloads`). An extension of this implementation, used by `nex devrun` to redeploy without
    /// an outage; Nex has no such field.
    public var replaces: String?
    /// The name of the file a function came from (`echofunction.js`), which its stacks name. An extension of this
    /// implementation, set by `nex devrun`; the node keeps only a plain file name of it.
    public var sourceName: String?

    public init(
        location: WorkloadLocation, senderPublicKey: String, targetNode: String, workloadName: String,
        workloadJWT: String, type: String
    ) {
        self.location = location
        self.senderPublicKey = senderPublicKey
        self.targetNode = targetNode
        self.workloadName = workloadName
        self.workloadJWT = workloadJWT
        self.type = type
    }

    enum CodingKeys: String, CodingKey {
        case argv, description, hash, location, essential, environment, id, type, triggers
        case jsDomain = "jsdomain"
        case retryCount = "retry_count"
        case retriedAt = "retried_at"
        case senderPublicKey = "sender_public_key"
        case targetNode = "target_node"
        case triggerSubjects = "trigger_subjects"
        case hostServicesConfig = "host_services_config"
        case workloadName = "workload_name"
        case workloadJWT = "workload_jwt"
        case maxConcurrency = "max_concurrency"
        case replaces
        case sourceName = "source_name"
    }
}

/// NATS connection settings a workload's host services use.
public struct HostServicesConfig: Codable, Sendable, Equatable {
    public var natsURL: String?
    public var natsUserJWT: String?
    public var natsUserSeed: String?

    public init(natsURL: String? = nil, natsUserJWT: String? = nil, natsUserSeed: String? = nil) {
        self.natsURL = natsURL
        self.natsUserJWT = natsUserJWT
        self.natsUserSeed = natsUserSeed
    }

    enum CodingKeys: String, CodingKey {
        case natsURL = "nats_url"
        case natsUserJWT = "nats_user_jwt"
        case natsUserSeed = "nats_user_seed"
    }
}

/// An artifact's place: `nats://BUCKET/key`, or a container image's: `oci://REGISTRY/REPO[:TAG|@sha256:…]`.
/// Encoded as that URL string; decoded from the string or from the Go `url.URL` object form (`{"Scheme":"nats","Host":"BUCKET","Path":"/key",…}`) Go clients send.
public struct WorkloadLocation: Codable, Sendable, Equatable, CustomStringConvertible {
    public var scheme: String
    /// The object store bucket.
    public var bucket: String
    /// The object's key.
    public var key: String

    public init(bucket: String, key: String, scheme: String = "nats") {
        self.scheme = scheme
        self.bucket = bucket
        self.key = key
    }

    /// Whether it names a container image (`oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`): then ``bucket`` is
    /// the registry and ``key`` the repository with its tag or digest.
    public var isImage: Bool { scheme == "oci" }

    /// Parses `nats://BUCKET/key` or `oci://REGISTRY/REPO…`; nil for anything else.
    public init?(url: String) {
        guard let r = url.range(of: "://") else { return nil }
        let scheme = String(url[..<r.lowerBound])
        let rest = url[r.upperBound...]
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let bucket = String(rest[..<slash])
        let key = String(rest[rest.index(after: slash)...])
        guard scheme == "nats" || scheme == "oci", !bucket.isEmpty, !key.isEmpty else { return nil }
        self.init(bucket: bucket, key: key, scheme: scheme)
    }

    public var description: String { "\(scheme)://\(bucket)/\(key)" }

    struct GoURL: Codable {
        var Scheme: String
        var Host: String
        var Path: String
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let text = try? c.decode(String.self) {  // not a string: Go's URL form below
            guard let parsed = WorkloadLocation(url: text) else {
                throw DecodingError.dataCorruptedError(
                    in: c,
                    debugDescription: "location must be nats://BUCKET/key or oci://REGISTRY/REPO[:TAG], got \(text)")
            }
            self = parsed
        } else {
            let go = try c.decode(GoURL.self)
            guard go.Scheme == "nats" || go.Scheme == "oci", !go.Host.isEmpty, go.Path.count > 1 else {
                throw DecodingError.dataCorruptedError(
                    in: c, debugDescription: "location must be nats://BUCKET/key or oci://REGISTRY/REPO")
            }
            self.init(bucket: go.Host, key: String(go.Path.dropFirst()), scheme: go.Scheme)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension DeployRequest {
    /// ``sourceName`` when it is a plain file name (no path, no control characters, at most 255 bytes), else nil.
    public var plainSourceName: String? {
        guard let name = sourceName, !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..",
            !name.contains("/"), name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        else { return nil }
        return name
    }
}
