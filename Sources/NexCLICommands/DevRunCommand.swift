import ArgumentParser
import Foundation
import NKeys
import NexControlClient
import NexModels
import NexNode
import NexOCI

/// How `devrun` and `run` wait for a deployed workload.
struct WaitOptions: ParsableArguments {
    @Flag(
        inversion: .prefixedNo,
        help: "Wait until the workload runs (a service: still up after --settle), or report its exit and last lines.")
    var wait = true

    @Option(help: "Seconds a new service must stay up to count as running (0 to 600).")
    var settle: Double = 1

    func validate() throws {
        guard (0...600).contains(settle) else {
            throw ValidationError("--settle takes 0 to 600 seconds, got \(settle)")
        }
    }

    /// Waits for the deployed workload `run` on `node` as these options say, through `watch`.
    func outcome(
        of run: RunResponse, type: String, node: String, watch: DeployWatch, _ nex: NexControlClient
    ) async throws -> DeployOutcome {
        guard wait else { return .accepted }
        // A function is running once accepted: the node answers after its triggers are subscribed.
        let settleTime: Duration = type == WorkloadType.native.rawValue ? .milliseconds(Int64(settle * 1000)) : .zero
        if let exit = try await watch.exit(of: run.id, within: settleTime) {
            return .exited(code: exit.code, message: exit.message, lastLines: try await watch.lastLines(of: run.id))
        }
        // No exit seen: the node must still list it (an exit event can be lost with a connection).
        let info = try await Output.refusalsAsErrors { try await nex.info(node: node) }
        guard info.machines.contains(where: { $0.workload.id == run.id }) else {
            return .exited(
                code: -1, message: "it is gone from the node", lastLines: try await watch.lastLines(of: run.id))
        }
        return .running
    }
}

/// What `devrun` and `run` print with `--json`.
struct DeployReport: Encodable {
    var id: String
    var name: String
    var node: String
    /// `running` or `accepted` (with `--no-wait`).
    var status: String
    /// The earlier copies this one replaced.
    var replaced: [String]
}

/// `nex devrun FILE [KEY=VAL…]`.
struct DevRunCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "devrun",
        abstract: "Upload a file and run it on a node chosen by auction (developer keys under ~/.nex).",
        discussion: """
            A workload of the same name you deployed earlier is replaced without an outage: the new copy starts \
            beside it, and the earlier one stops only once the new one runs. A new copy that is refused or exits \
            leaves the earlier one serving.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var workload: WorkloadOptions
    @OptionGroup var waiting: WaitOptions
    @OptionGroup var images: ImageOptions

    @Argument(
        help: "The service executable, JavaScript file or WebAssembly module, or an image: oci://REGISTRY/REPO[:TAG].")
    var file: String

    @Argument(help: "Environment, as KEY=VAL.")
    var environment: [String] = []

    @Flag(
        inversion: .prefixedNo,
        help: "Replace a workload of the same name you deployed earlier (the new copy runs first).")
    var stop = true

    @Flag(help: "Print one JSON object.")
    var json = false

    func execute() async throws {
        let isImage = file.hasPrefix(ImageReference.scheme)
        guard isImage || FileManager.default.isReadableFile(atPath: file) else { throw CLIError("cannot read \(file)") }
        let env = try WorkloadOptions.environment(environment)
        let type = try NodeChoice.checked(workload.type(of: file))
        let name = isImage ? ImageOptions.workloadName(for: file) ?? "image" : Self.workloadName(for: file)
        // An image's tag is resolved here, once: every node is sent the digest.
        let image = isImage ? try await images.resolve(file) : nil
        try workload.checkTriggers(namespace: global.namespace)
        let issuer = try DeveloperKeys.loadOrCreate("issuer.nk", .account)
        let publisher = try DeveloperKeys.loadOrCreate("publisher.xk", .curve)
        try await global.withClient { client in
            let nex = global.nex(client)
            let candidates = try await nex.auction(AuctionRequest(workloadTypes: [type]))
            guard !candidates.isEmpty else { throw try await NodeChoice.whyNoNode(for: type, nex) }
            let (earlier, foreignNodes) =
                stop
                ? await Redeploy.lookUp(name, by: issuer.publicKey, on: candidates.map(\.nodeID), nex) : ([], [])
            // A node that runs the earlier copy takes the new one; else the least busy (ties at random) of those
            // without another issuer's copy, so deploys spread across the nodes.
            let open = candidates.filter { !foreignNodes.contains($0.nodeID) }
            let choices = open.isEmpty ? candidates : open
            let fewest = choices.map(\.runningMachines).min() ?? 0
            let node =
                candidates.first { c in earlier.contains { $0.node == c.nodeID } }
                ?? choices.filter { $0.runningMachines == fewest }.randomElement()!
            let replaced = earlier.first { $0.node == node.nodeID }
            let (location, hash) =
                if let image { (image.location, image.digest.description) } else {
                    try await nex.uploadArtifact(file: file, key: name)
                }
            var request = try NexControlClient.makeDeployRequest(
                name: name, type: type, location: location, hash: hash, environment: env, issuer: issuer,
                publisher: publisher, targetNode: node.nodeID, targetXkey: node.targetXkey,
                triggerSubjects: workload.triggerSubjects, argv: workload.argvList, essential: workload.essential,
                description: workload.description, maxConcurrency: workload.maxConcurrency)
            request.replaces = replaced?.id
            request.triggers = workload.triggerList
            if !isImage { request.sourceName = (file as NSString).lastPathComponent }
            var deployer = Deployer(
                nex: nex, name: name, issuer: issuer, earlier: earlier,
                replacesRestoring: stop && !foreignNodes.contains(node.nodeID))
            let result = try await deployer.deploy(request, on: node.nodeID, type: type, waiting: waiting)
            let (run, outcome) = (result.run, result.outcome)
            // The new copy runs: the earlier ones go (those on other nodes too).
            let replacedIDs = await Redeploy.replace(result, name: name, issuer: issuer, nex)
            let report = DeployReport(
                id: run.id, name: run.name, node: node.nodeID, status: outcome.status, replaced: replacedIDs)
            if json { return print(try Output.json(report, compact: true)) }
            Output.say(
                "Workload \(run.id) (\(run.name)) \(outcome.status == "running" ? "is running" : "was accepted") "
                    + "on node \(node.nodeID)")
            if !replacedIDs.isEmpty {
                Output.say("Replaced the earlier \(name) (\(replacedIDs.joined(separator: ", ")))")
            }
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

/// Sends a deploy and waits for what it turns into, keeping the earlier copies serving unless the new one runs.
struct Deployer {
    let nex: NexControlClient
    let name: String
    let issuer: NKeyPair
    /// The copies the new one replaces (kept while it is not running).
    var earlier: [WorkloadCopy]
    /// Whether a copy of this name that a restarting node is bringing back (it holds its place before it shows)
    /// is waited for and replaced, as `devrun` replaces earlier copies (not when the node runs another issuer's
    /// copy: that is what it refuses the deploy for).
    var replacesRestoring = false

    /// What a deploy came to.
    struct Result {
        var run: RunResponse
        var outcome: DeployOutcome
        /// Every earlier copy, those found while deploying included.
        var earlier: [WorkloadCopy]
        /// The earlier copy stopped before the new one ran, to make room (if any).
        var stoppedFirst: WorkloadCopy?
    }

    /// Deploys `request` on `node` and waits as `waiting` says. A refusal, or a new copy that exits before it
    /// settles, throws with the reason and what still runs.
    mutating func deploy(_ request: DeployRequest, on node: String, type: String, waiting: WaitOptions) async throws
        -> Result
    {
        let watch = try await DeployWatch(nex, name: name)
        defer { watch.close() }
        var stoppedFirst: WorkloadCopy?
        var request = request
        var run: RunResponse?
        while run == nil {
            do {
                run = try await nex.deploy(request, to: node)
            } catch let e as NexError {
                if e.message.contains("is already running"), replacesRestoring, request.replaces == nil,
                    let restoring = try await restoringCopy(on: node)
                {
                    // A copy the node is bringing back after a restart: replaced once it shows.
                    earlier.append(restoring)
                    request.replaces = restoring.id
                    continue
                }
                guard e.message.contains("max_workloads"),
                    let copy = earlier.first(where: { $0.id == request.replaces })
                else { throw CLIError(e.message + keptNote) }
                // No room for both on that node: the earlier copy goes first (a short outage, said).
                Output.notice(
                    "node \(node) has no room for a second \(name) (node_limits.max_workloads): stopping the earlier "
                        + "copy (\(copy.id)) first")
                try await Redeploy.stop(copy, name: name, issuer: issuer, nex)
                stoppedFirst = copy
                request.replaces = nil
                do { run = try await nex.deploy(request, to: node) } catch let e as NexError {
                    throw CLIError(e.message + stoppedNote(copy))
                }
            }
        }
        let accepted = run!
        let outcome = try await waiting.outcome(of: accepted, type: type, node: node, watch: watch, nex)
        if case .exited(let code, let message, let lines) = outcome {
            // An essential service is restarted by the node under a new id, again and again: the restart goes.
            if request.essential == true { await stopRestarts(on: node) }
            var text = "workload \(accepted.id) (\(name)) exited with code \(code) before it settled"
            if !message.isEmpty { text += ": \(message)" }
            text +=
                lines.isEmpty
                ? " (it logged nothing)" : "; its last lines:\n" + lines.map { "  " + $0 }.joined(separator: "\n")
            throw CLIError(text + (stoppedFirst.map { stoppedNote($0) } ?? keptNote))
        }
        return Result(run: accepted, outcome: outcome, earlier: earlier, stoppedFirst: stoppedFirst)
    }

    /// The copy of this name a restarting node holds a place for, once it shows (up to 15 s).
    private func restoringCopy(on node: String) async throws -> WorkloadCopy? {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if let copy = await Redeploy.earlierCopies(of: name, by: issuer.publicKey, on: [node], nex).first {
                return copy
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        return nil
    }

    /// Stops the copies of this name on `node` that are not earlier ones: the node's restarts of an essential
    /// service that exited. Restarts come after a backoff: looked for during 5 s.
    private func stopRestarts(on node: String) async {
        let deadline = ContinuousClock.now + .seconds(5)
        var stopped = 0
        while ContinuousClock.now < deadline {
            let restarts = await Redeploy.earlierCopies(of: name, by: issuer.publicKey, on: [node], nex).filter {
                !earlier.contains($0)
            }
            stopped += await Redeploy.stopAll(restarts, name: name, issuer: issuer, nex).count
            if stopped > 0 { return }
            do { try await Task.sleep(for: .milliseconds(200)) } catch { return }
        }
    }

    /// What a failed deploy says when the earlier copy was stopped to make room.
    private func stoppedNote(_ copy: WorkloadCopy) -> String {
        "\n(the earlier \(name) (\(copy.id)) was stopped to make room: no copy of \(name) runs on node \(copy.node) now)"
    }

    /// What a failed redeploy leaves running.
    private var keptNote: String {
        earlier.isEmpty ? "" : "\n(the earlier \(name) still runs: \(earlier.map(\.id).joined(separator: ", ")))"
    }
}

extension DeployOutcome {
    /// `running` or `accepted`.
    var status: String {
        switch self {
        case .running: "running"
        case .accepted: "accepted"
        case .exited: "exited"
        }
    }
}
