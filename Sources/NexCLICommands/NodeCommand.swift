import ArgumentParser
import Foundation
import Logging
import NATS
import NexControlClient
import NexModels
import NexNode
import NexProcess
import OTel
import ServiceLifecycle
import Tracing

/// `nex node …`.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Run a node, or list and inspect nodes.",
        subcommands: [Up.self, List.self, Info.self, ProbeCommand.self, PreflightCommand.self])

    /// `nex node up`.
    struct Up: AsyncParsableCommand, NexCLIRunnable {
        static let configuration = CommandConfiguration(
            abstract: "Start a node on this machine (an embedded nats-server with JetStream when none is reachable).")

        @OptionGroup var global: GlobalOptions

        @Option(help: "Node configuration file (JSON).")
        var config: String?

        @Option(name: .customLong("tags"), help: "Tag k=v (repeatable).")
        var tags: [String] = []

        @Flag(name: .customLong("no-sandbox"), help: "Run workloads without a sandbox (unsafe).")
        var noSandbox = false

        @Option(help: "The sandbox driver: auto, namespace, vm or firecracker (overrides the configuration's).")
        var sandbox: String?

        @Option(
            name: .customLong("logger"),
            help: """
                Where the node logs: std (standard error), file (nex.log, and nex.err for warnings and worse, in \
                the working directory) or nats ($NEX.logs.system.<node>.stdout|stderr). Repeatable; default std.
                """)
        var loggers: [String] = []

        @Flag(name: .customLong("logjson"), help: "Log JSON lines (time, level, logger, msg and metadata keys).")
        var logJSON = false

        @Flag(help: "Send spans to an OpenTelemetry collector over OTLP/HTTP (config: otel_traces).")
        var traces = false

        @Option(
            name: .customLong("otlp_exporter_url"),
            help: "The collector's OTLP/HTTP address (default http://127.0.0.1:4318; config: otlp_exporter_url).")
        var otlpExporterURL: String?

        @Flag(
            help:
                "Serve Prometheus metrics on /metrics, on loopback unless otel_metrics_host says (config: otel_metrics)."
        )
        var metrics = false

        @Option(
            name: .customLong("metrics_port"),
            help: "The metrics port (default 8085; config: otel_metrics_port, and otel_metrics_host for the address).")
        var metricsPort: Int?

        func validate() throws {
            if noSandbox, let sandbox {
                throw ValidationError(
                    "--no-sandbox and --sandbox \(sandbox) contradict each other: give one (--no-sandbox runs "
                        + "workloads unsandboxed)")
            }
            if let sandbox, NodeConfiguration.SandboxKind(rawValue: sandbox) == nil {
                throw ValidationError("--sandbox takes auto, namespace, vm or firecracker, got \(sandbox)")
            }
            if let metricsPort, !(0...65535).contains(metricsPort) {
                throw ValidationError("--metrics_port takes 0 (any free port) to 65535, got \(metricsPort)")
            }
        }

        func execute() async throws {
            let logs = try Self.logSinks(loggers)
            let level = Logger.Level(rawValue: global.logLevel) ?? .info
            LoggingSystem.bootstrap { [json = logJSON] label in
                NodeLogHandler(label: label, level: level, json: json, sinks: logs.sinks)
            }
            var configuration = try config.map { try NodeConfiguration.load(path: $0) } ?? NodeConfiguration()
            for tag in tags {
                let parts = tag.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw CLIError("--tags takes k=v, got \(tag)") }
                configuration.tags[parts[0]] = parts[1]
            }
            if noSandbox { configuration.noSandbox = true }
            if let sandbox {
                guard let kind = NodeConfiguration.SandboxKind(rawValue: sandbox) else {
                    throw CLIError("--sandbox takes auto, namespace, vm or firecracker, got \(sandbox)")
                }
                configuration.sandbox = kind
            }
            if metrics { configuration.otelMetrics = true }
            if traces { configuration.otelTraces = true }
            if let otlpExporterURL { configuration.otlpExporterURL = otlpExporterURL }
            if let metricsPort { configuration.otelMetricsPort = metricsPort }
            try configuration.validate()
            // Before anything else: a second node on this resource directory is refused here.
            let home: NodeHome
            do { home = try NodeHome.open(configuration: configuration) } catch { throw CLIError(error.message) }
            defer { home.release() }

            var embedded: NATSServerProcess?
            let client: NATSClient
            if let servers = try global.servers() {
                client = try await global.connect()
                Output.say("Connected to \(servers.joined(separator: ","))")
            } else if let local = try? await global.connect(to: ["nats://127.0.0.1:4222"]) {  // none there: embed one
                client = local
                Output.say("Connected to nats://127.0.0.1:4222")
            } else {
                let server = try await Self.startEmbeddedServer()
                embedded = server
                client = NATSClient(configuration: try global.configuration(servers: [server.url]))
                try await client.connect()
                Output.say(
                    "No NATS server given or reachable: started an embedded nats-server with JetStream at \(server.url)"
                )
                Output.say("(data under \(Self.dataDirectory)); point other tools at it with NATS_URL=\(server.url)")
            }

            var tracing = NodeTracer()
            var tracesService: (any Service)?
            if configuration.otelTraces == true {
                let backend = try Self.tracingBackend(configuration)
                tracing = NodeTracer(backend.tracer)
                tracesService = backend.service
            }
            let node = NexNode(
                configuration: configuration, client: client, identity: home.identity, tracing: tracing,
                logger: Logger(label: "nex.node"))
            Output.say("Node \(node.nodeID) is up (xkey \(node.xkey.publicKey)); Ctrl-C stops it")
            // The node ends by itself after a lame-duck drain (lameduck_drain_and_exit): that is a clean exit.
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
            if let shipper = logs.shipper {
                // First in the group, so last to stop: the node's shutdown lines are shipped too.
                shipper.ship(through: client, nodeID: node.nodeID)
                services.append(.init(service: shipper))
            }
            if let tracesService {
                // Before the node, so it stops after it: the node's last spans are exported at shutdown.
                // Its failure (a collector gone) stops the node gracefully, so queued logs still go out.
                services.append(.init(service: tracesService, failureTerminationBehavior: .gracefullyShutdownGroup))
            }
            services.append(.init(service: node, successTerminationBehavior: .gracefullyShutdownGroup))
            if configuration.otelMetrics == true {
                let server = NodeMetricsServer(
                    node: node, host: configuration.otelMetricsHost ?? "127.0.0.1",
                    port: configuration.otelMetricsPort ?? NodeMetricsServer.defaultPort,
                    logger: Logger(label: "nex.metrics"))
                // A port already taken stops the node gracefully (the reason is logged), not abruptly.
                services.append(.init(service: server, failureTerminationBehavior: .gracefullyShutdownGroup))
            }
            let group = ServiceGroup(
                configuration: .init(
                    services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "nex")))
            do { try await group.run() } catch {
                await client.close()
                await embedded?.stop()
                throw error
            }
            await client.close()
            await embedded?.stop()
            // Everything the node started was awaited: say so, or name what was not.
            let left = await ThreadCensus.nexThreadsLeft(after: .seconds(2))
            let logger = Logger(label: "nex")
            if left.isEmpty {
                logger.info("node stopped: none of its tasks or threads is left")
            } else {
                logger.warning("node stopped, but threads of it are still running", metadata: ["threads": "\(left)"])
            }
        }

        static var dataDirectory: String { NexHome.path + "/nats" }

        /// OpenTelemetry's tracer and its exporting service: OTLP (protobuf over HTTP) to the configured
        /// collector, only traces (the node's logs and metrics have their own ways out).
        static func tracingBackend(_ configuration: NodeConfiguration) throws -> (
            tracer: any Tracer, service: any Service
        ) {
            var otel = OTel.Configuration.default
            otel.serviceName = "nex-node"
            otel.logs.enabled = false
            otel.metrics.enabled = false
            otel.traces.otlpExporter.endpoint = configuration.otlpTracesEndpoint
            otel.traces.otlpExporter.protocol = .httpProtobuf
            do {
                let (tracer, service) = try OTel.makeTracingBackend(configuration: otel)
                return (tracer, service)
            } catch {
                throw CLIError("cannot send traces to \(configuration.otlpTracesEndpoint): \(error)")
            }
        }

        /// The sinks `--logger` names (std when none), and the NATS shipper among them to run as a service.
        static func logSinks(_ names: [String]) throws -> (sinks: [any NodeLogSink], shipper: NATSLogShipper?) {
            var sinks: [any NodeLogSink] = []
            var shipper: NATSLogShipper?
            var seen: Set<String> = []
            for name in names.isEmpty ? ["std"] : names where seen.insert(name).inserted {
                switch name {
                case "std": sinks.append(StandardLogSink())
                case "file":
                    do { sinks.append(try FileLogSink(directory: FileManager.default.currentDirectoryPath)) } catch {
                        throw CLIError(error.description)
                    }
                case "nats":
                    let nats = NATSLogShipper()
                    shipper = nats
                    sinks.append(nats)
                default: throw CLIError("--logger takes std, file or nats, got \(name)")
                }
            }
            return (sinks, shipper)
        }

        /// A nats-server with JetStream on loopback: on 4222 (so other tools find it without options) or,
        /// when that port is taken, on any free one.
        static func startEmbeddedServer() async throws -> NATSServerProcess {
            guard let binary = NATSServerProcess.findBinary(nexHome: NexHome.path) else {
                throw CLIError(
                    "no NATS server is reachable and nats-server is not installed (PATH, NATS_SERVER_BIN or ~/.nex/bin)"
                )
            }
            var lastError: any Error = CLIError("no port")
            for port in ["4222", "-1"] {
                let config = """
                    host: 127.0.0.1
                    port: \(port)
                    jetstream { store_dir: "\(dataDirectory)" }

                    """
                do {
                    return try await NATSServerProcess.start(
                        binary: binary, directory: dataDirectory + "/server", config: config)
                } catch { lastError = error }
            }
            throw CLIError("no NATS server is reachable and an embedded one did not start: \(lastError)")
        }
    }

    /// `nex node ls`.
    struct List: AsyncParsableCommand, NexCLIRunnable {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the nodes that answer.")

        @OptionGroup var global: GlobalOptions

        @Flag(help: "Print JSON.")
        var json = false

        func execute() async throws {
            try await global.withClient { client in
                let nodes = try await global.nex(client).ping()
                if json {
                    print(try Output.json(nodes))
                    return
                }
                guard !nodes.isEmpty else {
                    throw CLIError("no Nex node answered: start one with `nex node up` (and check --server)")
                }
                let rows = nodes.sorted { $0.nodeID < $1.nodeID }.map { n in
                    [
                        n.nodeID, n.version, GoDuration.human(n.uptime), String(n.runningMachines),
                        n.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                    ]
                }
                print(Output.table(["NODE ID", "VERSION", "UPTIME", "WORKLOADS", "TAGS"], rows))
            }
        }
    }

    /// `nex node info <id>`.
    struct Info: AsyncParsableCommand, NexCLIRunnable {
        static let configuration = CommandConfiguration(abstract: "Show one node's details.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "The node id (N…), or a unique prefix of it.")
        var node: String

        @Flag(help: "Print JSON.")
        var json = false

        func execute() async throws {
            try await global.withClient { client in
                let node = try await IDResolution.node(self.node, global.nex(client))
                let info = try await Output.refusalsAsErrors {
                    try await global.nex(client).info(node: node)
                }
                if json {
                    print(try Output.json(info))
                    return
                }
                print("Node:            \(node)")
                print("Version:         \(info.version)   Uptime: \(GoDuration.human(info.uptime))")
                print("Xkey:            \(info.publicXkey)")
                print("Workload types:  \(info.supportedWorkloadTypes.joined(separator: ", "))")
                print("Warm agents:     \(info.availableAgents)")
                if let m = info.memory {
                    // INFO gives kB, as /proc/meminfo does.
                    print(
                        "Memory:          \(Output.bytes(m.total * 1024)) total, \(Output.bytes(m.available * 1024)) "
                            + "available, \(Output.bytes(m.free * 1024)) free")
                }
                print(
                    "Tags:            \(info.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))"
                )
                guard !info.machines.isEmpty else {
                    print("Workloads (\(global.namespace)): none")
                    return
                }
                print("Workloads (\(global.namespace)):")
                let rows = info.machines.map { m in
                    [
                        m.workload.id, m.workload.name, m.workload.type, GoDuration.human(m.workload.uptime),
                        m.healthy ? "yes" : "no",
                    ]
                }
                print(Output.table(["ID", "NAME", "TYPE", "UPTIME", "HEALTHY"], rows, indent: "  "))
            }
        }
    }
}

/// `nex lameduck <id>`.
struct LameDuckCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "lameduck", abstract: "Put a node in lame duck mode: it refuses new workloads.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The node id (N…), or a unique prefix of it.")
    var node: String

    func execute() async throws {
        try await global.withClient { client in
            let node = try await IDResolution.node(self.node, global.nex(client))
            let response = try await Output.refusalsAsErrors {
                try await global.nex(client).lameDuck(node: node)
            }
            print(response.success ? "Node \(node) is in lame duck mode" : "Node \(node) did not enter lame duck mode")
        }
    }
}
