import Foundation
public import NexModels
import NexOCI

/// A node's configuration file (`nex node up --config FILE`): the Nex 0.x keys, plus `sandbox`.
/// Unknown keys are errors that name the key.
public struct NodeConfiguration: Codable, Sendable, Equatable {
    public var defaultResourceDir: String?
    public var kernelFilepath: String?
    public var rootfsFilepath: String?
    /// Warm agents kept ready (default 1).
    public var machinePoolSize = 1
    public var machineTemplate = MachineTemplate()
    /// Free-form CNI settings (kept for compatibility; the sandbox drivers use their own).
    public var cni: [String: String]?
    /// Run workloads without any sandbox. Off by default: sandboxed is the default.
    public var noSandbox = false
    /// Sandbox driver: `auto` (strongest that works), `namespace`, `vm` or `firecracker`.
    public var sandbox = SandboxKind.auto
    /// Workload types this node runs: every type its agent can run (native, v8, wasm) unless narrowed here.
    public var workloadTypes = NodeConfiguration.allWorkloadTypes
    public var allowDuplicateWorkloads = false
    /// Subjects refused to workloads (as triggers, and to publish or request on), in addition to the reserved
    /// ones (see ``SubjectPolicy``).
    public var denyTriggerSubjects: [String] = []
    /// Which subjects workloads may use beyond the defaults: reserved ones opened by name, and allow-lists by
    /// namespace (see ``SubjectPolicy``).
    public var subjectPolicy = SubjectPolicyConfig()
    /// NATS servers (`host:port`) a sandboxed service may be given a path to, besides the node's own servers
    /// and its `host_services_config.nats.nats_url`.
    public var sandboxNATSServers: [String] = []
    /// Issuer public keys (`A…`) allowed to deploy; empty allows any issuer.
    public var validIssuers: [String] = []
    public var tags: [String: String] = [:]
    public var nodeLimits = NodeLimits()
    public var hostServicesConfig: HostServices?
    public var autostart: Autostart?
    public var agentHandshakeTimeoutMs = 25_000
    public var agentPingTimeoutMs = 750
    /// The `nex-agent` executable; default: next to the running executable.
    public var agentPath: String?
    /// First delay before an essential workload that exited non-zero is restarted; doubles per retry.
    public var restartBackoffInitialMs = 1_000
    /// The cap of that delay.
    public var restartBackoffMaxMs = 60_000
    /// How many times an essential workload is restarted before the node gives up (0: no limit).
    public var maxRestarts = 10
    /// When set, lame duck stops every workload and then shuts the node down (Nex 0.x never exited).
    public var lameduckDrainAndExit = false
    /// Limits of every function: `{cpu_ms, memory_mib, queue_depth}` (5000, 64, 256).
    public var functionLimits = FunctionLimits()
    /// Things in the configuration the node should warn about at start (not a key: set while decoding).
    public var notices: [String] = []
    /// The node's server seed (`SN…`); default: made once and kept as `node.nk` in the resource directory.
    public var nodeSeed: String?
    /// The node's curve seed (`SX…`); default: made once and kept as `node.xk` in the resource directory.
    public var nodeXkeySeed: String?
    /// Record every accepted deploy in the resource directory and start the recorded workloads again after
    /// a restart or crash (default true). Off: a restarted node comes back empty.
    public var persistWorkloads = true
    /// `oci_registries`: the registries this node pulls container images from, by `HOST:PORT` (or `HOST` for
    /// 443). Loopback and private registries need an entry; public ones are reached without one, through the
    /// egress policy (global addresses only).
    public var ociRegistries: [String: OCIRegistryConfig] = [:]
    /// `oci_cache_limit_mb`: what the image cache under the node's home may hold before the least recently used
    /// image no workload runs is evicted.
    public var ociCacheLimitMB = 10_240
    /// `oci_keep_setid`: keep setuid and setgid bits of image files (dropped by default; inside the sandbox's user
    /// namespace they grant nothing beyond it, but a node that never needs them should not carry them).
    public var ociKeepSetID = false

    /// One `oci_registries` entry.
    public struct OCIRegistryConfig: Codable, Sendable, Equatable {
        /// Plain HTTP (for a registry on loopback or a private network that has no TLS).
        public var insecure = false
        public var username: String?
        public var password: String?
        /// PEM roots to trust for it instead of the system's.
        public var caFile: String?

        public init(insecure: Bool = false, username: String? = nil, password: String? = nil, caFile: String? = nil) {
            self.insecure = insecure
            self.username = username
            self.password = password
            self.caFile = caFile
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case insecure, username, password
            case caFile = "ca_file"
        }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.allNames)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            insecure = try c.decodeIfPresent(Bool.self, forKey: .insecure) ?? false
            username = try c.decodeIfPresent(String.self, forKey: .username)
            password = try c.decodeIfPresent(String.self, forKey: .password)
            caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
        }
    }
    /// Serve Prometheus metrics on `GET /metrics` (as `nex node up --metrics`).
    public var otelMetrics: Bool?
    /// The metrics port (default 8085, as Nex; 0: any free port).
    public var otelMetricsPort: Int?
    /// The address metrics listen on: loopback unless set (`0.0.0.0` for a Prometheus on another host).
    public var otelMetricsHost: String?
    /// `prometheus`, the only exporter (the default).
    public var otelMetricsExporter: String?
    /// Send spans (deploys, triggers, host-service calls) to an OpenTelemetry collector (as `--traces`).
    public var otelTraces: Bool?
    /// `otlp` (OTLP over HTTP), the only exporter (the default).
    public var otelTracesExporter: String?
    /// The collector's OTLP/HTTP address (default `http://127.0.0.1:4318`; `/v1/traces` is added when the URL
    /// has no path).
    public var otlpExporterURL: String?

    public init() {}

    /// The workload types `nex-agent` runs: native services, JavaScript (V8) and WebAssembly functions.
    public static let allWorkloadTypes = WorkloadType.allCases

    /// The sandbox drivers a node can use (`sandbox`).
    public enum SandboxKind: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
        /// The strongest that works here: today, namespace.
        case auto
        /// Linux namespaces and cgroups through bubblewrap.
        case namespace
        /// QEMU microVMs restored from a snapshot.
        case vm
        /// Firecracker microVMs.
        case firecracker

        public var description: String { rawValue }
    }

    /// Resources of each sandbox.
    public struct MachineTemplate: Codable, Sendable, Equatable {
        public var vcpuCount = 1
        public var memsizeMib = 256
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case vcpuCount = "vcpu_count"
            case memsizeMib = "memsize_mib"
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.allNames)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            vcpuCount = try c.decodeIfPresent(Int.self, forKey: .vcpuCount) ?? 1
            memsizeMib = try c.decodeIfPresent(Int.self, forKey: .memsizeMib) ?? 256
        }
    }

    /// Limits over everything the node runs; nil is unlimited.
    public struct NodeLimits: Codable, Sendable, Equatable {
        public var maxWorkloads: Int?
        public var maxTotalBytes: Int64?
        public var maxWorkloadBytes: Int64?
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case maxWorkloads = "max_workloads"
            case maxTotalBytes = "max_total_bytes"
            case maxWorkloadBytes = "max_workload_bytes"
        }
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.allNames)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxWorkloads = try c.decodeIfPresent(Int.self, forKey: .maxWorkloads)
            maxTotalBytes = try c.decodeIfPresent(Int64.self, forKey: .maxTotalBytes)
            maxWorkloadBytes = try c.decodeIfPresent(Int64.self, forKey: .maxWorkloadBytes)
        }
    }

    /// `subject_policy`: `{"allow_reserved": [...], "namespaces": {"<ns>": [...]}}`.
    public struct SubjectPolicyConfig: Codable, Sendable, Equatable {
        /// Patterns that open reserved subjects (`$…`, `_INBOX…`) by name, to every namespace.
        public var allowReserved: [String] = []
        /// Allow-lists of subject patterns by namespace (`"*"`: every namespace without its own).
        public var namespaces: [String: [String]] = [:]
        /// Nothing opened, nothing narrowed.
        public init() {}
        enum CodingKeys: String, CodingKey, CaseIterable {
            case allowReserved = "allow_reserved"
            case namespaces
        }
        /// Decodes `subject_policy`, refusing unknown keys.
        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.allNames)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            allowReserved = try c.decodeIfPresent([String].self, forKey: .allowReserved) ?? []
            namespaces = try c.decodeIfPresent([String: [String]].self, forKey: .namespaces) ?? [:]
        }
    }

    /// When essential workloads (and recorded ones whose restore failed) are tried again.
    var restartPolicy: RestartPolicy {
        RestartPolicy(
            initialBackoff: .milliseconds(restartBackoffInitialMs), maxBackoff: .milliseconds(restartBackoffMaxMs),
            maxRestarts: maxRestarts)
    }

    /// The policy over the subjects workloads use: `subject_policy` and `deny_trigger_subjects` together.
    public var workloadSubjects: SubjectPolicy {
        SubjectPolicy(
            allowReserved: subjectPolicy.allowReserved, namespaces: subjectPolicy.namespaces,
            deny: denyTriggerSubjects)
    }

    /// Where host services connect, and which are on.
    public struct HostServices: Codable, Sendable, Equatable {
        public var nats: NATSConnection?
        /// `kv`, `objectstore`, `messaging`, `http`.
        public var services: [String: ServiceSwitch]?

        public struct NATSConnection: Codable, Sendable, Equatable {
            public var natsURL: String?
            public var natsUserJWT: String?
            public var natsUserSeed: String?
            enum CodingKeys: String, CodingKey, CaseIterable {
                case natsURL = "nats_url"
                case natsUserJWT = "nats_user_jwt"
                case natsUserSeed = "nats_user_seed"
            }
            public init(from decoder: any Decoder) throws {
                try decoder.rejectUnknownKeys(CodingKeys.allNames)
                let c = try decoder.container(keyedBy: CodingKeys.self)
                natsURL = try c.decodeIfPresent(String.self, forKey: .natsURL)
                natsUserJWT = try c.decodeIfPresent(String.self, forKey: .natsUserJWT)
                natsUserSeed = try c.decodeIfPresent(String.self, forKey: .natsUserSeed)
            }
        }

        public struct ServiceSwitch: Codable, Sendable, Equatable {
            public var enabled: Bool
            public var config: [String: String]?
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case nats, services }

        public init(from decoder: any Decoder) throws {
            try decoder.rejectUnknownKeys(CodingKeys.allNames)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            nats = try c.decodeIfPresent(NATSConnection.self, forKey: .nats)
            services = try c.decodeIfPresent([String: ServiceSwitch].self, forKey: .services)
            for name in (services ?? [:]).keys where !["kv", "objectstore", "messaging", "http"].contains(name) {
                throw NodeConfigurationError.unknownKey("host_services_config.services.\(name)")
            }
            do {
                _ = try EgressPolicy(config: services?["http"]?.config)
            } catch {
                throw NodeConfigurationError.invalid(error.description)
            }
        }

        /// Where the http host service may connect beyond global addresses (`services.http.config.allow`).
        var egressPolicy: EgressPolicy {
            (try? EgressPolicy(config: services?["http"]?.config)) ?? .globalOnly  // checked when decoded
        }
    }

    /// Workloads the node deploys at start.
    public struct Autostart: Codable, Sendable, Equatable {
        public var workloads: [AutostartWorkload]
    }

    /// One workload deployed at start. Its environment is sealed before it goes anywhere.
    public struct AutostartWorkload: Codable, Sendable, Equatable {
        public var name: String
        public var namespace: String?
        public var description: String?
        public var type: String
        public var location: String
        public var hash: String?
        public var environment: [String: String]?
        public var essential: Bool?
        public var triggerSubjects: [String]?
        public var argv: [String]?

        enum CodingKeys: String, CodingKey {
            case name, namespace, description, type, location, hash, environment, essential, argv
            case triggerSubjects = "trigger_subjects"
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cni, sandbox, tags, autostart
        case defaultResourceDir = "default_resource_dir"
        case kernelFilepath = "kernel_filepath"
        case rootfsFilepath = "rootfs_filepath"
        case machinePoolSize = "machine_pool_size"
        case machineTemplate = "machine_template"
        case noSandbox = "no_sandbox"
        case workloadTypes = "workload_types"
        case allowDuplicateWorkloads = "allow_duplicate_workloads"
        case denyTriggerSubjects = "deny_trigger_subjects"
        case subjectPolicy = "subject_policy"
        case sandboxNATSServers = "sandbox_nats_servers"
        case validIssuers = "valid_issuers"
        case nodeLimits = "node_limits"
        case hostServicesConfig = "host_services_config"
        case agentHandshakeTimeoutMs = "agent_handshake_timeout_ms"
        case agentPingTimeoutMs = "agent_ping_timeout_ms"
        case agentPath = "agent_path"
        case restartBackoffInitialMs = "restart_backoff_initial_ms"
        case restartBackoffMaxMs = "restart_backoff_max_ms"
        case maxRestarts = "max_restarts"
        case lameduckDrainAndExit = "lameduck_drain_and_exit"
        case functionLimits = "function_limits"
        case nodeSeed = "node_seed"
        case nodeXkeySeed = "node_xkey_seed"
        case persistWorkloads = "persist_workloads"
        case otelMetrics = "otel_metrics"
        case otelMetricsPort = "otel_metrics_port"
        case otelMetricsExporter = "otel_metrics_exporter"
        case otelMetricsHost = "otel_metrics_host"
        case otelTraces = "otel_traces"
        case otelTracesExporter = "otel_traces_exporter"
        case otlpExporterURL = "otlp_exporter_url"
        case ociRegistries = "oci_registries"
        case ociCacheLimitMB = "oci_cache_limit_mb"
        case ociKeepSetID = "oci_keep_setid"
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.allNames)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        defaultResourceDir = try c.decodeIfPresent(String.self, forKey: .defaultResourceDir)
        kernelFilepath = try c.decodeIfPresent(String.self, forKey: .kernelFilepath)
        rootfsFilepath = try c.decodeIfPresent(String.self, forKey: .rootfsFilepath)
        machinePoolSize = try c.decodeIfPresent(Int.self, forKey: .machinePoolSize) ?? 1
        machineTemplate = try c.decodeIfPresent(MachineTemplate.self, forKey: .machineTemplate) ?? MachineTemplate()
        cni = try c.decodeIfPresent([String: String].self, forKey: .cni)
        noSandbox = try c.decodeIfPresent(Bool.self, forKey: .noSandbox) ?? false
        let sandboxName = try c.decodeIfPresent(String.self, forKey: .sandbox) ?? SandboxKind.auto.rawValue
        guard let sandbox = SandboxKind(rawValue: sandboxName) else {
            throw NodeConfigurationError.invalid(
                "sandbox must be auto, namespace, vm or firecracker (got \(sandboxName))")
        }
        self.sandbox = sandbox
        let typeNames = try c.decodeIfPresent([String].self, forKey: .workloadTypes)
        workloadTypes =
            try typeNames.map { names in
                try names.map { name in
                    guard let type = WorkloadType(rawValue: name) else {
                        throw NodeConfigurationError.invalid("workload type \(name) is not native, v8 or wasm")
                    }
                    return type
                }
            } ?? Self.allWorkloadTypes
        allowDuplicateWorkloads = try c.decodeIfPresent(Bool.self, forKey: .allowDuplicateWorkloads) ?? false
        denyTriggerSubjects = try c.decodeIfPresent([String].self, forKey: .denyTriggerSubjects) ?? []
        subjectPolicy = try c.decodeIfPresent(SubjectPolicyConfig.self, forKey: .subjectPolicy) ?? SubjectPolicyConfig()
        sandboxNATSServers = try c.decodeIfPresent([String].self, forKey: .sandboxNATSServers) ?? []
        validIssuers = try c.decodeIfPresent([String].self, forKey: .validIssuers) ?? []
        tags = try c.decodeIfPresent([String: String].self, forKey: .tags) ?? [:]
        nodeLimits = try c.decodeIfPresent(NodeLimits.self, forKey: .nodeLimits) ?? NodeLimits()
        hostServicesConfig = try c.decodeIfPresent(HostServices.self, forKey: .hostServicesConfig)
        autostart = try c.decodeIfPresent(Autostart.self, forKey: .autostart)
        agentHandshakeTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .agentHandshakeTimeoutMs) ?? 25_000
        agentPingTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .agentPingTimeoutMs) ?? 750
        agentPath = try c.decodeIfPresent(String.self, forKey: .agentPath)
        restartBackoffInitialMs = try c.decodeIfPresent(Int.self, forKey: .restartBackoffInitialMs) ?? 1_000
        restartBackoffMaxMs = try c.decodeIfPresent(Int.self, forKey: .restartBackoffMaxMs) ?? 60_000
        maxRestarts = try c.decodeIfPresent(Int.self, forKey: .maxRestarts) ?? 10
        lameduckDrainAndExit = try c.decodeIfPresent(Bool.self, forKey: .lameduckDrainAndExit) ?? false
        let limits = try c.decodeIfPresent(StrictFunctionLimits.self, forKey: .functionLimits)
        functionLimits = limits?.value ?? FunctionLimits()
        if limits?.hadWasmFuel == true {
            notices.append(
                "function_limits.wasm_fuel is no longer used: WebAssembly functions run in V8 and cpu_ms bounds "
                    + "them, as it bounds JavaScript; remove the key")
        }
        nodeSeed = try c.decodeIfPresent(String.self, forKey: .nodeSeed)
        nodeXkeySeed = try c.decodeIfPresent(String.self, forKey: .nodeXkeySeed)
        persistWorkloads = try c.decodeIfPresent(Bool.self, forKey: .persistWorkloads) ?? true
        otelMetrics = try c.decodeIfPresent(Bool.self, forKey: .otelMetrics)
        otelMetricsPort = try c.decodeIfPresent(Int.self, forKey: .otelMetricsPort)
        otelMetricsExporter = try c.decodeIfPresent(String.self, forKey: .otelMetricsExporter)
        otelMetricsHost = try c.decodeIfPresent(String.self, forKey: .otelMetricsHost)
        otelTraces = try c.decodeIfPresent(Bool.self, forKey: .otelTraces)
        otelTracesExporter = try c.decodeIfPresent(String.self, forKey: .otelTracesExporter)
        otlpExporterURL = try c.decodeIfPresent(String.self, forKey: .otlpExporterURL)
        ociRegistries = try c.decodeIfPresent([String: OCIRegistryConfig].self, forKey: .ociRegistries) ?? [:]
        ociCacheLimitMB = try c.decodeIfPresent(Int.self, forKey: .ociCacheLimitMB) ?? 10_240
        ociKeepSetID = try c.decodeIfPresent(Bool.self, forKey: .ociKeepSetID) ?? false
        try validate()
    }

    /// Checks values a decoder cannot (ranges, choices, key shapes).
    public func validate() throws {
        guard machinePoolSize >= 1 else { throw NodeConfigurationError.invalid("machine_pool_size must be at least 1") }
        guard ociCacheLimitMB >= 1 else {
            throw NodeConfigurationError.invalid("oci_cache_limit_mb must be at least 1")
        }
        for registry in ociRegistries.keys {
            // The parser of image references decides what a registry is.
            guard (try? ImageReference(parsing: "oci://\(registry)/probe")) != nil, !registry.contains("/") else {
                throw NodeConfigurationError.invalid(
                    "oci_registries key \(registry) is not HOST or HOST:PORT (such as 127.0.0.1:5000 or ghcr.io)")
            }
        }
        guard machineTemplate.vcpuCount >= 1, machineTemplate.memsizeMib >= 16 else {
            throw NodeConfigurationError.invalid("machine_template needs vcpu_count ≥ 1 and memsize_mib ≥ 16")
        }
        for issuer in validIssuers where !(issuer.hasPrefix("A") && issuer.count == 56) {
            throw NodeConfigurationError.invalid("valid_issuers holds \(issuer), not an account public key")
        }
        guard restartBackoffInitialMs > 0, restartBackoffMaxMs >= restartBackoffInitialMs, maxRestarts >= 0 else {
            throw NodeConfigurationError.invalid(
                "restart_backoff_initial_ms must be > 0 and ≤ restart_backoff_max_ms; max_restarts ≥ 0")
        }
        guard functionLimits.cpuMillis > 0, functionLimits.memoryMiB >= 1,
            (0...100_000).contains(functionLimits.queueDepth)
        else {
            throw NodeConfigurationError.invalid(
                "function_limits needs cpu_ms > 0, memory_mib ≥ 1 and queue_depth from 0 to 100000")
        }
        guard agentHandshakeTimeoutMs > 0, agentPingTimeoutMs > 0 else {
            throw NodeConfigurationError.invalid("agent_handshake_timeout_ms and agent_ping_timeout_ms must be > 0")
        }
        if let seed = nodeSeed, !seed.hasPrefix("SN") {
            throw NodeConfigurationError.invalid("node_seed must be a server seed (SN…)")
        }
        if let seed = nodeXkeySeed, !seed.hasPrefix("SX") {
            throw NodeConfigurationError.invalid("node_xkey_seed must be a curve seed (SX…)")
        }
        if let port = otelMetricsPort, !(0...65_535).contains(port) {
            throw NodeConfigurationError.invalid("otel_metrics_port must be a port number (0 to 65535), got \(port)")
        }
        // Nex's own values (`file`, `grpc`, a URL without a scheme) are accepted while the feature is off, so
        // a Nex configuration loads as it is.
        if otelTraces == true {
            if let exporter = otelTracesExporter, !["otlp", "http"].contains(exporter) {
                throw NodeConfigurationError.invalid(
                    "otel_traces_exporter \(exporter) is not supported: use \"otlp\" (OTLP over HTTP to "
                        + "otlp_exporter_url)")
            }
            if !Self.isHTTPURL(otlpTracesEndpoint) {
                throw NodeConfigurationError.invalid(
                    "otlp_exporter_url must be a collector's address such as http://127.0.0.1:4318, got "
                        + (otlpExporterURL ?? ""))
            }
        }
        if otelMetrics == true, let exporter = otelMetricsExporter, exporter != "prometheus" {
            throw NodeConfigurationError.invalid(
                "otel_metrics_exporter \(exporter) is not supported: use \"prometheus\" (scraped on /metrics)")
        }
        try workloadSubjects.validate()
        for server in sandboxNATSServers where NATSServerEndpoint(server) == nil {
            throw NodeConfigurationError.invalid(
                "sandbox_nats_servers holds \(server), not a server address such as nats.internal:4222")
        }
        for key in tags.keys where key.hasPrefix("nex.") {
            throw NodeConfigurationError.invalid("tag \(key) is reserved for the node")
        }
    }

    private static func isHTTPURL(_ text: String) -> Bool {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased() else { return false }
        return ["http", "https"].contains(scheme) && url.host?.isEmpty == false
    }

    /// Where spans go: `otlp_exporter_url` (`http://` when it has no scheme, as Nex's `127.0.0.1:14532`),
    /// with `/v1/traces` when it names no path.
    public var otlpTracesEndpoint: String {
        var base = otlpExporterURL ?? "http://127.0.0.1:4318"
        if !base.contains("://") { base = "http://" + base }
        guard let url = URL(string: base), url.path.isEmpty || url.path == "/" else { return base }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
    }

    /// Reads and checks a configuration file.
    public static func load(path: String) throws -> NodeConfiguration {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw NodeConfigurationError.unreadable("\(path): \(error.localizedDescription)")
        }
        return try parse(data)
    }

    /// Parses configuration JSON strictly (no trailing commas or duplicate keys), turning failures into errors
    /// that say where (a line and column, or a key's path) and name types as a user knows them.
    public static func parse(_ data: Data) throws -> NodeConfiguration {
        let fractional: [(path: String, text: String)]
        do { fractional = try StrictJSON.check(Array(data)) } catch {
            throw NodeConfigurationError.invalid("not valid JSON at \(error.description)")
        }
        do {
            return try JSONDecoder().decode(NodeConfiguration.self, from: data)
        } catch let e as NodeConfigurationError {
            throw e
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            throw NodeConfigurationError.invalid("\(keyPath(context.codingPath)) should be \(plainName(of: type))")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            // A number that does not fit the key's type: 2.5 for a count.
            throw NodeConfigurationError.invalid(
                "\(keyPath(context.codingPath)) should be a whole number in range (\(context.debugDescription))")
        } catch let DecodingError.dataCorrupted(context) {
            // The text is JSON (checked above): Foundation says "not valid JSON" for a fraction given where a
            // whole number belongs, without the key.
            if let number = fractional.first {
                throw NodeConfigurationError.invalid("\(number.path) should be a whole number, not \(number.text)")
            }
            throw NodeConfigurationError.invalid("not valid JSON: \(context.debugDescription)")
        } catch {
            throw NodeConfigurationError.invalid("\(error)")
        }
    }

    /// `node_limits.max_workloads`, `tags.x`, `allow[2]`.
    static func keyPath(_ path: [any CodingKey]) -> String {
        path.reduce(into: "") { text, key in
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
    }

    /// A type as a user of the JSON file knows it.
    static func plainName(of type: Any.Type) -> String {
        if type is Bool.Type { return "true or false" }
        if type is Int.Type || type is Int64.Type || type is Int32.Type || type is UInt64.Type || type is UInt32.Type
            || type is UInt16.Type
        {
            return "a whole number"
        }
        if type is Double.Type || type is Float.Type { return "a number" }
        if type is String.Type { return "a string" }
        return String(describing: type).hasPrefix("Array") ? "an array" : "an object"
    }
}

extension CaseIterable where Self: CodingKey {
    /// Every key name, for rejecting the ones not listed.
    static var allNames: [String] { allCases.map(\.stringValue) }
}

/// `function_limits` with unknown keys refused, like every other part of the configuration. `wasm_fuel`
/// (WasmKit's fuel, before WebAssembly moved to V8) is still read, so older files load, and reported.
struct StrictFunctionLimits: Decodable {
    var value: FunctionLimits
    var hadWasmFuel: Bool
    init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(["cpu_ms", "memory_mib", "queue_depth", "wasm_fuel"])
        value = try FunctionLimits(from: decoder)
        hadWasmFuel = try decoder.container(keyedBy: AnyKey.self).contains(AnyKey(stringValue: "wasm_fuel"))
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
