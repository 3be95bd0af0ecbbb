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

    @OptionGroup(title: "Triggers from JetStream (functions)") var jetStream: TriggerOptions

    /// The deploy's `triggers` (nil without any).
    var triggerList: [WorkloadTrigger]? {
        let list = jetStream.triggers
        return list.isEmpty ? nil : list
    }

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
        // An image is a service.
        type ?? (file.hasPrefix("oci://") ? WorkloadType.native.rawValue : WorkloadType(guessingFrom: file).rawValue)
    }

    /// `--argv` split into arguments.
    var argvList: [String] { argv.map { $0.split(separator: " ").map(String.init) } ?? [] }

    func validate() throws {
        if let type, !NodeChoice.types.contains(type) {
            throw ValidationError(
                "--type \(type) is not a workload type: use one of \(NodeChoice.types.joined(separator: ", "))")
        }
        if let maxConcurrency, !(1...1024).contains(maxConcurrency) {
            throw ValidationError("--max_concurrency takes 1 to 1024, got \(maxConcurrency)")
        }
    }

    /// Refuses a trigger subject every node would refuse, before anything is deployed or stopped.
    func checkTriggers(namespace: String) throws {
        for subject in triggerSubjects {
            if let refusal = SubjectPolicy().refusal(for: subject, namespace: namespace, use: .trigger) {
                throw CLIError(refusal.description)
            }
        }
    }
}

/// `nex run nats://BUCKET/key <node> [KEY=VAL…]`.
struct RunCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run an uploaded artifact on a node, with your issuer and xkey.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var workload: WorkloadOptions
    @OptionGroup var waiting: WaitOptions
    @OptionGroup var images: ImageOptions

    @Argument(help: "The artifact: nats://BUCKET/key, or an image: oci://REGISTRY/REPO[:TAG|@sha256:DIGEST].")
    var location: String

    @Argument(help: "The node id (N…), or a unique prefix of it.")
    var node: String

    @Argument(help: "Environment, as KEY=VAL.")
    var environment: [String] = []

    @Option(help: "Publisher curve seed file (SX…) used to seal the environment.")
    var xkey: String

    @Option(help: "Issuer account seed file (SA…) used to sign the deploy.")
    var issuer: String

    @Option(help: "The workload name.")
    var name: String

    @Flag(
        inversion: .prefixedNo,
        help: "Replace a workload of this name you run on that node (the new copy runs first).")
    var stop = true

    @Flag(help: "Print one JSON object.")
    var json = false

    func execute() async throws {
        guard let given = WorkloadLocation(url: location) else {
            throw CLIError("the location must be nats://BUCKET/key or oci://REGISTRY/REPO[:TAG|@sha256:DIGEST]")
        }
        let env = try WorkloadOptions.environment(environment)
        let type = try NodeChoice.checked(workload.type(of: given.isImage ? location : given.key))
        // An image's tag is resolved here, once: the node is sent the digest.
        let image = given.isImage ? try await images.resolve(location) : nil
        let artifact = image?.location ?? given
        try workload.checkTriggers(namespace: global.namespace)
        let issuerKey = try DeveloperKeys.load(issuer, expecting: .account)
        let publisher = try DeveloperKeys.load(xkey, expecting: .curve)
        try await global.withClient { client in
            let nex = global.nex(client)
            let hash =
                if let image { image.digest.description } else {
                    try await Self.objectHash(artifact, client: client)
                }
            let node = try await IDResolution.node(self.node, nex)
            let target = try await Output.refusalsAsErrors { try await nex.ping(node: node) }
            var request = try NexControlClient.makeDeployRequest(
                name: name, type: type, location: artifact, hash: hash, environment: env,
                issuer: issuerKey, publisher: publisher, targetNode: node, targetXkey: target.targetXkey,
                triggerSubjects: workload.triggerSubjects, argv: workload.argvList, essential: workload.essential,
                description: workload.description, maxConcurrency: workload.maxConcurrency)
            request.triggers = workload.triggerList
            // Only the copies on this node are replaced: the same workload run on other nodes stays.
            let (earlier, foreignNodes) =
                stop ? await Redeploy.lookUp(name, by: issuerKey.publicKey, on: [node], nex) : ([], [])
            request.replaces = earlier.first?.id
            var deployer = Deployer(
                nex: nex, name: name, issuer: issuerKey, earlier: earlier,
                replacesRestoring: stop && foreignNodes.isEmpty)
            let result = try await deployer.deploy(request, on: node, type: type, waiting: waiting)
            let (run, outcome) = (result.run, result.outcome)
            let replaced = await Redeploy.replace(result, name: name, issuer: issuerKey, nex)
            if json {
                return print(
                    try Output.json(
                        DeployReport(
                            id: run.id, name: run.name, node: node, status: outcome.status, replaced: replaced),
                        compact: true))
            }
            Output.say(
                "Workload \(run.id) (\(run.name)) \(outcome.status == "running" ? "is running" : "was accepted") "
                    + "on node \(node)")
            if !replaced.isEmpty { Output.say("Replaced the earlier \(name) (\(replaced.joined(separator: ", ")))") }
        }
    }
}

extension RunCommand {
    /// The hex SHA-256 of an object-store artifact, from its info.
    static func objectHash(_ artifact: WorkloadLocation, client: NATSClient) async throws -> String {
        let store: ObjectStore
        do { store = try await JetStreamContext(client: client).objectStore(artifact.bucket) } catch {
            throw CLIError("no object store \(artifact.bucket): \(error)")
        }
        guard let info = try await store.info(artifact.key) else {
            throw CLIError("no object \(artifact.key) in \(artifact.bucket)")
        }
        guard let hash = NexControlClient.hexSHA256(fromDigest: info.digest) else {
            throw CLIError("\(artifact) has no SHA-256 digest")
        }
        return hash
    }
}

/// `nex stop WORKLOAD` or `nex stop NODE WORKLOAD`.
struct StopCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop a workload (only its deploying issuer may).",
        discussion: "WORKLOAD is an id, a unique prefix of one, or a workload name; NODE an id or a unique prefix.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "[NODE] WORKLOAD: the workload (id, prefix or name), after its node when you give one.")
    var targets: [String] = []

    @Option(help: "Issuer account seed file (SA…) that deployed the workload (default ~/.nex/issuer.nk).")
    var issuer: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard (1...2).contains(targets.count) else {
            throw ValidationError("give the workload (an id, a prefix or a name), or its node and then the workload")
        }
    }

    func execute() async throws {
        let issuerKey = try DeveloperKeys.load(issuer ?? DeveloperKeys.home + "/issuer.nk", expecting: .account)
        try await global.withClient { client in
            let nex = global.nex(client)
            let node = targets.count == 2 ? try await IDResolution.node(targets[0], nex) : nil
            let text = targets.last!
            // A full id on a given node needs no lookup.
            let copy =
                if let node, UUID(uuidString: text) != nil { WorkloadCopy(id: text.lowercased(), node: node) } else {
                    try await IDResolution.workload(text, node: node, nex)
                }
            let stopped = try await Output.refusalsAsErrors {
                try await nex.stop(workloadID: copy.id, node: copy.node, issuer: issuerKey)
            }
            if json {
                return print(
                    try Output.json(StopReport(id: copy.id, node: copy.node, stopped: stopped.stopped), compact: true))
            }
            guard stopped.stopped else { throw CLIError("workload \(copy.id) was not stopped") }
            Output.say("Workload \(copy.id) stopped on node \(copy.node)")
        }
    }

    /// What `nex stop --json` prints.
    struct StopReport: Encodable {
        var id: String
        var node: String
        var stopped: Bool
    }
}

/// `nex logs [WORKLOAD]`.
struct LogsCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show workload logs: the lines the nodes kept, then new ones as they come.",
        discussion:
            "Nodes keep the last \(LogHistory.linesPerWorkload) lines of each workload (stream \(LogHistory.stream)).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only this workload: its name, its id or a unique prefix of the id.")
    var workload: String?

    @Option(help: "Only this node (its id or a unique prefix).")
    var node: String?

    @Option(name: .customLong("workload_name"), help: "Only workloads of this name.")
    var workloadName: String?

    @Option(name: .customLong("workload_id"), help: "Only this workload.")
    var workloadID: String?

    @Flag(inversion: .prefixedNo, help: "Keep following new lines (--no-follow: print the kept lines and exit).")
    var follow = true

    @Flag(help: "One JSON object per line.")
    var json = false

    func execute() async throws {
        try await global.withClient { client in
            let nex = global.nex(client)
            var node: String?
            if let given = self.node { node = try await IDResolution.node(given, nex) }
            var (name, id) = (workloadName, workloadID)
            if let workload {
                let target = try await IDResolution.logsTarget(workload, node: node, nex)
                (name, id) = (target.name ?? name, target.id ?? id)
            }
            let lines = try await LogHistory.lines(nex, node: node, workloadName: name, workloadID: id, follow: follow)
            if follow { Output.notice("Following logs of namespace \(global.namespace) (Ctrl-C stops)") }
            var printed = 0
            for try await line in lines {
                printed += 1
                if json { Output.say(try Output.json(line, compact: true)) } else { Output.say(Self.text(of: line)) }
            }
            if !follow, printed == 0 { Output.notice("no kept lines match") }
        }
    }

    /// `15:04:05.123 [echoservice 1f2e3d4c info] the line`.
    static func text(of line: LogRecord) -> String {
        let time = line.time.map { Output.clock($0) + " " } ?? ""
        return "\(time)[\(line.workloadName) \(line.workloadID.prefix(8)) \(line.levelName)] \(line.text)"
    }
}

/// `nex events`.
struct EventsCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Follow Nex events (node events are in namespace system).")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Only events of this type (\(EventLines.types.joined(separator: ", "))).")
    var type: String?

    @Flag(name: .customLong("all-namespaces"), help: "Events of every namespace, system included.")
    var allNamespaces = false

    @Flag(help: "Each event as one line of CloudEvent JSON.")
    var json = false

    func validate() throws {
        if let type, !EventLines.types.contains(type) {
            let hint = Suggestions.nearest(to: type, in: EventLines.types).map { " (did you mean \($0)?)" } ?? ""
            throw ValidationError(
                "--type \(type) is not an event type\(hint): use one of \(EventLines.types.joined(separator: ", "))")
        }
    }

    func execute() async throws {
        try await global.withClient { client in
            let events = try await global.nex(client).events(namespace: allNamespaces ? "*" : global.namespace)
            Output.notice("Following events (Ctrl-C stops)")
            for try await event in events where type == nil || event.type == type {
                Output.say(json ? String(decoding: event.json, as: UTF8.self) : EventLines.line(for: event))
            }
        }
    }
}

/// `nex node probe`: deprecated, `nex ls` lists the same.
struct ProbeCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "probe", abstract: "Deprecated: use `nex ls` (the same listing, with uptime and health).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "Only workloads with this id or name.")
    var workload: String?

    @Flag(help: "Print JSON.")
    var json = false

    func execute() async throws {
        Output.notice("nex node probe is deprecated: use nex ls")
        var list = WorkloadCommand.List()
        list.global = global
        list.workload = workload
        list.json = json
        try await list.execute()
    }
}
