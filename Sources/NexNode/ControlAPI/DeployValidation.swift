import Foundation
import NKeys
import NexModels

/// A deploy request that passed every check, with what the checks produced.
public struct ValidatedDeploy: Sendable {
    public var request: DeployRequest
    public var claims: JWTClaims
    /// The decrypted environment.
    public var environment: [String: String]
    /// The signed artifact hash (hex SHA-256).
    public var hash: String
}

/// The checks of a deploy that need no agent (wire contract §3), in the order a user would want to hear
/// about them. Each failure is a message for the requester.
public struct DeployValidator: Sendable {
    public var config: NodeConfiguration
    /// The node's curve key: environments are sealed to it.
    public var xkey: NKeyPair
    public var lameDuck = false
    public var now: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }
    /// The NATS servers a sandboxed service may be given (nil: the node runs no sandbox, nothing is opened).
    var sandboxServers: SandboxServerPolicy?
    /// Where a deploy's own `host_services_config.nats_url` may point (nil: not checked here).
    var hostServicesEgress: EgressPolicy?
    /// Told of every trigger subject the subject policy refuses (the node counts them).
    var subjectRefused: @Sendable (SubjectRefusal) -> Void = { _ in }

    public init(config: NodeConfiguration, xkey: NKeyPair) {
        self.config = config
        self.xkey = xkey
    }

    /// `^[a-zA-Z0-9_-]+$`.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty
            && name.unicodeScalars.allSatisfy { c in
                (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
            }
    }

    /// The most triggers of one function a deploy may ask to run at once.
    static let maxConcurrencyLimit = 256

    /// Checks a deploy to `namespace`.
    public func validate(_ request: DeployRequest, namespace: String) -> Result<ValidatedDeploy, NexError> {
        if lameDuck {
            return .failure(
                .init(.unavailable, "node is in lame duck mode and accepts no new workloads: deploy to another node"))
        }
        guard let type = request.workloadType, config.workloadTypes.contains(type) else {
            return .failure(
                .init(
                    .unsupported,
                    "workload type \(request.type) is not supported by this node (its workload_types are "
                        + "\(config.workloadTypes.map(\.rawValue).joined(separator: ", ")); add \"\(request.type)\" to workload_types in "
                        + "the node's configuration)"))
        }
        if type.isFunction, (request.triggerSubjects ?? []).isEmpty, (request.triggers ?? []).isEmpty {
            return .failure(
                .init(
                    .invalidRequest,
                    "a \(request.type) function needs at least one trigger subject or trigger (devrun --trigger_subject, "
                        + "--stream, --kv-watch, --os-watch, --cron or --every)"))
        }
        if !type.isFunction, !(request.triggers ?? []).isEmpty {
            return .failure(
                .init(.invalidRequest, "triggers apply to functions (v8, wasm), not \(request.type) workloads"))
        }
        if let concurrency = request.maxConcurrency {
            guard type.isFunction else {
                return .failure(
                    .init(
                        .invalidRequest,
                        "max_concurrency applies to functions (v8, wasm), not \(request.type) workloads"))
            }
            guard (1...Self.maxConcurrencyLimit).contains(concurrency) else {
                return .failure(
                    .init(
                        .invalidRequest,
                        "max_concurrency must be from 1 to \(Self.maxConcurrencyLimit) (got \(concurrency)); leave it out for "
                            + "one per CPU"))
            }
        }
        let claims: JWTClaims
        do { claims = try NATSJWT.verify(request.workloadJWT, now: now()) } catch {
            return .failure(.init(.unauthorized, "invalid workload JWT: \(error.message)"))
        }
        guard claims.issuer.hasPrefix("A") else {
            return .failure(
                .init(
                    .unauthorized,
                    "the workload JWT issuer must be an account key (A…): sign with an account seed (SA…)"))
        }
        if !config.validIssuers.isEmpty, !config.validIssuers.contains(claims.issuer) {
            return .failure(
                .init(
                    .unauthorized,
                    "issuer \(claims.issuer) is not a valid issuer for this node (sign with a key in its "
                        + "valid_issuers, or add this one there)"))
        }
        // After the token is verified: only a deployer the node accepts is told (and counted) why.
        let subjects = config.workloadSubjects
        for subject in request.triggerSubjects ?? [] {
            if let refusal = subjects.refusal(for: subject, namespace: namespace, use: .trigger) {
                subjectRefused(refusal)
                return .failure(refusal.nexError)
            }
        }
        if let triggers = request.triggers,
            let refusal = TriggerValidation(policy: subjects, namespace: namespace, subjectRefused: subjectRefused)
                .refusal(for: triggers)
        {
            return .failure(refusal)
        }
        guard let name = claims.nats["name"]?.stringValue, Self.isValidName(name) else {
            return .failure(
                .init(.invalidRequest, "invalid workload name in the JWT: names may use letters, digits, - and _"))
        }
        guard name == request.workloadName else {
            return .failure(
                .init(
                    .invalidRequest,
                    "workload name \(request.workloadName) does not match the signed name \(name): sign the deploy for "
                        + "the name it is sent with"))
        }
        // An image's hash is its digest, `sha256:HEX` (the bare hex is taken too); an artifact's is the hex.
        func hex(_ text: String) -> String {
            let lowered = text.lowercased()
            return request.location.isImage && lowered.hasPrefix("sha256:") ? String(lowered.dropFirst(7)) : lowered
        }
        guard let signed = claims.nats["hash"]?.stringValue, case let signedHash = hex(signed), signedHash.count == 64,
            signedHash.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
        else {
            return .failure(
                .init(
                    .integrity, "the workload JWT carries no artifact hash: sign nats.hash with the artifact's SHA-256")
            )
        }
        if let hash = request.hash, !hash.isEmpty, hex(hash) != signedHash {
            return .failure(
                .init(
                    .integrity,
                    "hash \(hash) does not match the signed hash: send the hash the token was signed with, or none"))
        }
        var environment: [String: String] = [:]
        if let sealed = request.environment, !sealed.isEmpty {
            guard let bytes = Data(base64Encoded: sealed) else {
                return .failure(
                    .init(
                        .invalidRequest,
                        "environment is not base64: send the xkey-sealed environment in standard base64"))
            }
            do {
                let plain = try xkey.open(Array(bytes), from: request.senderPublicKey)
                environment = try JSONDecoder().decode([String: String].self, from: Data(plain))
            } catch let e as NKeyError {
                return .failure(
                    .init(
                        .invalidRequest,
                        "cannot open the environment (sealed to another node's xkey? seal it to this node's "
                            + "target_xkey from PING or INFO): \(e.message)"))
            } catch {
                return .failure(.init(.invalidRequest, "the environment is not a JSON object of strings"))
            }
        }
        if let urls = request.hostServicesConfig?.natsURL, let egress = hostServicesEgress,
            let refusal = egress.refusal(natsURLs: urls)
        {
            return .failure(.init(.unauthorized, refusal))
        }
        if type == .native, let servers = sandboxServers {
            var named = environment
            if let url = request.hostServicesConfig?.natsURL, named["NEX_HOSTSERVICES_NATS_SERVER"] == nil {
                named["NEX_HOSTSERVICES_NATS_SERVER"] = url
            }
            if let refusal = servers.refusal(for: named) { return .failure(refusal) }
        }
        return .success(
            ValidatedDeploy(request: request, claims: claims, environment: environment, hash: signedHash))
    }
}
