import ArgumentParser
import Foundation
import NATS
import NATSJetStream
import NKeys
import NexControlClient
import NexModels
import NexNode

/// Options every deploying command shares.
struct WorkloadOptions: ParsableArguments {
    @Option(name: .customLong("type"), help: "native, v8 or wasm (default: from the file name).")
    var type: String?

    @Option(name: .customLong("trigger_subject"), help: "Subject that triggers a function (repeatable).")
    var triggerSubjects: [String] = []

    @Option(help: "Arguments for a native service, space-separated.")
    var argv: String?

    @Flag(help: "Restart the service when it exits with an error.")
    var essential = false

    @Option(help: "A description.")
    var description: String?

    @Option(
        name: .customLong("max_concurrency"),
        help: "Functions: triggers run at once, each on its own engine instance (default: one per node CPU).")
    var maxConcurrency: Int?

    /// `KEY=VAL` pairs into an environment.
    static func environment(_ pairs: [String]) throws -> [String: String] {
        var env: [String: String] = [:]
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw CLIError("environment takes KEY=VAL, got \(pair)") }
            env[parts[0]] = parts[1]
        }
        return env
    }

    /// The workload type of a file, from `--type` or its extension.
    func type(of file: String) -> String {
        type ?? WorkloadType(guessingFrom: file).rawValue
    }
}

/// `nex devrun FILE [KEY=VAL…]`.
struct DevRunCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "devrun",
        abstract: "Upload a file and run it on a node chosen by auction (developer keys under ~/.nex).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var workload: WorkloadOptions

    @Argument(help: "The service executable, JavaScript file or WebAssembly module.")
    var file: String

    @Argument(help: "Environment, as KEY=VAL.")
    var environment: [String] = []

    @Flag(
        inversion: .prefixedNo,
        help: "Stop a workload of the same name you deployed earlier, and run this one in its place.")
    var stop = true

    func execute() async throws {
        guard FileManager.default.isReadableFile(atPath: file) else { throw CLIError("cannot read \(file)") }
        let env = try WorkloadOptions.environment(environment)
        let type = workload.type(of: file)
        let name = Self.workloadName(for: file)
        // Refused by every node: said before an earlier workload is stopped in its favour.
        for subject in workload.triggerSubjects {
            if let refusal = SubjectPolicy().refusal(for: subject, namespace: global.namespace, use: .trigger) {
                throw CLIError(refusal.description)
            }
        }
        let issuer = try DeveloperKeys.loadOrCreate("issuer.nk", .account)
        let publisher = try DeveloperKeys.loadOrCreate("publisher.xk", .curve)
        try await global.withClient { client in
            let nex = global.nex(client)
            let candidates = try await nex.auction(AuctionRequest(workloadTypes: [type]))
            guard !candidates.isEmpty else {
                throw CLIError(
                    "no node answered that can run \(type) workloads (a node runs the types in its workload_types; "
                        + "check `nex node ls` and the nodes' configuration)")
            }
            // A node that runs the earlier workload of this name is the one to replace it on.
            let running = stop ? try await nex.workloadPing(workload: name) : []
            let holders = Set(running.map(\.nodeID))
            // Else the least busy node (ties broken at random), so deploys spread across the nodes.
            let fewest = candidates.map(\.runningMachines).min() ?? 0
            let node =
                candidates.first { holders.contains($0.nodeID) }
                ?? candidates.filter { $0.runningMachines == fewest }.randomElement()!
            func earlier(in responses: [WorkloadPingResponse]) -> [MachineSummary] {
                responses.filter { $0.nodeID == node.nodeID }.flatMap(\.runningMachines).filter { $0.name == name }
            }
            func stopEarlier(_ machines: [MachineSummary]) async throws {
                for machine in machines {
                    do {
                        _ = try await nex.stop(workloadID: machine.id, node: node.nodeID, issuer: issuer)
                        Output.say("Stopped the earlier \(name) (\(machine.id)) on node \(node.nodeID)")
                    } catch let e as NexError {
                        throw CLIError(
                            "cannot replace the earlier \(name) (\(machine.id)) on node \(node.nodeID): \(e.message) "
                                + "(rename the file, or pass --no-stop on a node that allows duplicate workloads)")
                    }
                }
            }
            if stop { try await stopEarlier(earlier(in: running)) }
            let (location, hash) = try await nex.uploadArtifact(file: file, key: name)
            let request = try NexControlClient.makeDeployRequest(
                name: name, type: type, location: location, hash: hash, environment: env, issuer: issuer,
                publisher: publisher,
                targetNode: node.nodeID, targetXkey: node.targetXkey, triggerSubjects: workload.triggerSubjects,
                argv: workload.argv.map { $0.split(separator: " ").map(String.init) } ?? [],
                essential: workload.essential,
                description: workload.description, maxConcurrency: workload.maxConcurrency)
            let run: RunResponse
            do { run = try await nex.deploy(request, to: node.nodeID) } catch let e as NexError
                where stop && e.message.contains("is already running")
            {
                // One of this name is on its way (a node starting its recorded workloads after a restart): replace
                // it once it shows.
                let deadline = ContinuousClock.now + .seconds(15)
                var found: [MachineSummary] = []
                while found.isEmpty, ContinuousClock.now < deadline {
                    found = earlier(in: try await nex.workloadPing(workload: name))
                    if found.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
                }
                guard !found.isEmpty else { throw CLIError(e.message) }
                try await stopEarlier(found)
                run = try await Output.refusalsAsErrors { try await nex.deploy(request, to: node.nodeID) }
            } catch let e as NexError {
                throw CLIError(e.message)
            }
            Output.say("Workload \(run.id) (\(run.name)) accepted by node \(node.nodeID)")
        }
    }

    /// A workload name from a file name, as Nex makes it: the base name with everything outside
    /// `[a-zA-Z0-9_-]` removed (`echofunction.js` → `echofunctionjs`).
    static func workloadName(for file: String) -> String {
        let base = (file as NSString).lastPathComponent
        let name = base.unicodeScalars.filter { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "-"
        }
        return name.isEmpty ? "workload" : String(String.UnicodeScalarView(name))
    }
}

/// `nex run nats://BUCKET/key <node> [KEY=VAL…]`.
struct RunCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run an uploaded artifact on a node, with your issuer and xkey.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var workload: WorkloadOptions

    @Argument(help: "The artifact: nats://BUCKET/key.")
    var location: String

    @Argument(help: "The node id (N…).")
    var node: String

    @Argument(help: "Environment, as KEY=VAL.")
    var environment: [String] = []

    @Option(help: "Publisher curve seed file (SX…) used to seal the environment.")
    var xkey: String

    @Option(help: "Issuer account seed file (SA…) used to sign the deploy.")
    var issuer: String

    @Option(help: "The workload name.")
    var name: String

    func execute() async throws {
        guard let artifact = WorkloadLocation(url: location) else {
            throw CLIError("the location must be nats://BUCKET/key")
        }
        let env = try WorkloadOptions.environment(environment)
        let issuerKey = try DeveloperKeys.load(issuer, expecting: .account)
        let publisher = try DeveloperKeys.load(xkey, expecting: .curve)
        try await global.withClient { client in
            let nex = global.nex(client)
            let store: ObjectStore
            do { store = try await JetStreamContext(client: client).objectStore(artifact.bucket) } catch {
                throw CLIError("no object store \(artifact.bucket): \(error)")
            }
            guard let info = try await store.info(artifact.key) else {
                throw CLIError("no object \(artifact.key) in \(artifact.bucket)")
            }
            guard let hash = NexControlClient.hexSHA256(fromDigest: info.digest) else {
                throw CLIError("\(location) has no SHA-256 digest")
            }
            let target = try await Output.refusalsAsErrors { try await nex.ping(node: node) }
            let request = try NexControlClient.makeDeployRequest(
                name: name, type: workload.type(of: artifact.key), location: artifact, hash: hash, environment: env,
                issuer: issuerKey, publisher: publisher, targetNode: node, targetXkey: target.targetXkey,
                triggerSubjects: workload.triggerSubjects,
                argv: workload.argv.map { $0.split(separator: " ").map(String.init) } ?? [],
                essential: workload.essential,
                description: workload.description, maxConcurrency: workload.maxConcurrency)
            let run = try await Output.refusalsAsErrors { try await nex.deploy(request, to: node) }
            Output.say("Workload \(run.id) (\(run.name)) accepted by node \(node)")
        }
    }
}

/// `nex stop <node> <workload>`.
struct StopCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop a workload (only its deploying issuer may).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The node id (N…).")
    var node: String

    @Argument(help: "The workload id.")
    var workload: String

    @Option(help: "Issuer account seed file (SA…) that deployed the workload (default ~/.nex/issuer.nk).")
    var issuer: String?

    func execute() async throws {
        let issuerKey = try DeveloperKeys.load(issuer ?? DeveloperKeys.home + "/issuer.nk", expecting: .account)
        try await global.withClient { client in
            let nex = global.nex(client)
            let stopped = try await Output.refusalsAsErrors {
                try await nex.stop(workloadID: workload, node: node, issuer: issuerKey)
            }
            Output.say(stopped.stopped ? "Workload \(workload) stopped" : "Workload \(workload) was not stopped")
        }
    }
}

/// `nex logs`.
struct LogsCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Follow workload logs, filtered by node, workload name or id.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only this node.")
    var node: String?

    @Option(name: .customLong("workload_name"), help: "Only workloads of this name.")
    var workloadName: String?

    @Option(name: .customLong("workload_id"), help: "Only this workload.")
    var workloadID: String?

    func execute() async throws {
        let client = try await global.connect()
        let nex = global.nex(client)
        let lines = try await nex.logs(node: node, workloadName: workloadName, workloadID: workloadID)
        Output.say("Following logs of namespace \(global.namespace) (Ctrl-C stops)")
        for try await line in lines {
            let level = [-4: "debug", 0: "info", 4: "warn", 8: "error"][line.entry.level] ?? String(line.entry.level)
            Output.say("[\(line.workloadName) \(line.workloadID.prefix(8)) \(level)] \(line.entry.text)")
        }
    }
}

/// `nex events`.
struct EventsCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Follow Nex events (node events are in namespace system).")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only events of this type (e.g. workload_deployed).")
    var type: String?

    @Flag(name: .customLong("all-namespaces"), help: "Events of every namespace, system included.")
    var allNamespaces = false

    func execute() async throws {
        let client = try await global.connect()
        let nex = global.nex(client)
        let events = try await nex.events(namespace: allNamespaces ? "*" : global.namespace)
        Output.say("Following events (Ctrl-C stops)")
        for try await event in events where type == nil || event.type == type {
            Output.say("\(event.namespace) \(event.type) \(String(decoding: event.json, as: UTF8.self))")
        }
    }
}

/// `nex node probe`.
struct ProbeCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "probe", abstract: "List the workloads of this namespace on every node ($NEX.WPING).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only workloads with this id or name.")
    var workload: String?

    func execute() async throws {
        try await global.withClient { client in
            let nodes = try await global.nex(client).workloadPing(
                workload: workload)
            guard !nodes.isEmpty else {
                Output.say("No workloads in namespace \(global.namespace)")
                return
            }
            let rows = nodes.flatMap { n in n.runningMachines.map { [n.nodeID, $0.id, $0.name, $0.type] } }
            Output.say(Output.table(["NODE ID", "WORKLOAD ID", "NAME", "TYPE"], rows))
        }
    }
}
