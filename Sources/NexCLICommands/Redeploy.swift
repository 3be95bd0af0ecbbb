import Foundation
import NKeys
import NexControlClient
import NexModels

/// A running copy of a workload: its id and its node.
struct WorkloadCopy: Sendable, Hashable {
    var id: String
    var node: String
}

/// Finding and stopping the earlier copies of a workload that a redeploy replaces.
enum Redeploy {
    /// The copies of `name` in the namespace on `nodes` that `issuer` deployed, from one INFO each, asked all at
    /// once: every node answers INFO (a scatter to nodes that may hold none would wait out its whole window). A
    /// node that does not answer holds no copy this deploy can replace. A copy whose node does not say who
    /// deployed it (an older node) counts as the issuer's: a stop that is refused then says so.
    static func earlierCopies(of name: String, by issuer: String, on nodes: [String], _ nex: NexControlClient)
        async -> [WorkloadCopy]
    {
        await copies(of: name, on: nodes, nex).filter { $0.issuer == nil || $0.issuer == issuer }.map(\.copy)
    }

    /// The issuer's copies of `name` on `nodes` (as ``earlierCopies(of:by:on:_:)``), and the nodes that run
    /// another issuer's copy: they would refuse this one as a duplicate. Another issuer's copies are named in a
    /// notice and left alone (only their issuer may stop them).
    static func lookUp(_ name: String, by issuer: String, on nodes: [String], _ nex: NexControlClient)
        async -> (own: [WorkloadCopy], foreignNodes: Set<String>)
    {
        let found = await copies(of: name, on: nodes, nex)
        let foreign = found.filter { $0.issuer != nil && $0.issuer != issuer }
        let foreignNodes = Set(foreign.map(\.copy.node))
        if !foreign.isEmpty {
            Output.notice(
                "another issuer's \(name) runs on node \(foreignNodes.sorted().joined(separator: ", ")) "
                    + "(\(foreign.map(\.copy.id).joined(separator: ", "))): it is not replaced, and a node "
                    + "that runs it takes no second \(name) unless it allows duplicate workloads")
        }
        return (found.filter { $0.issuer == nil || $0.issuer == issuer }.map(\.copy), foreignNodes)
    }

    /// Every copy of `name` on `nodes`, with who deployed it when the node says.
    private static func copies(of name: String, on nodes: [String], _ nex: NexControlClient) async
        -> [(copy: WorkloadCopy, issuer: String?)]
    {
        let answers = await withTaskGroup(of: (String, [(copy: WorkloadCopy, issuer: String?)]?).self) { group in
            for node in nodes {
                group.addTask {
                    do {
                        let info = try await nex.info(node: node)
                        return (
                            node,
                            info.machines.filter { $0.workload.name == name }.map {
                                (WorkloadCopy(id: $0.workload.id, node: node), $0.workload.issuer)
                            }
                        )
                    } catch {
                        return (node, nil)
                    }
                }
            }
            var answers: [(String, [(copy: WorkloadCopy, issuer: String?)]?)] = []
            for await answer in group { answers.append(answer) }
            return answers
        }
        let silent = answers.filter { $0.1 == nil }.map(\.0).sorted()
        if !silent.isEmpty {
            Output.notice(
                "node \(silent.joined(separator: ", ")) did not answer INFO: a copy of \(name) there is not replaced")
        }
        return answers.flatMap { $0.1 ?? [] }.sorted { ($0.copy.node, $0.copy.id) < ($1.copy.node, $1.copy.id) }
    }

    /// Once the new copy runs: stops the earlier copies the deploy found, but the one stopped first to make
    /// room. Returns the ids of every earlier copy that is gone.
    static func replace(_ deployed: Deployer.Result, name: String, issuer: NKeyPair, _ nex: NexControlClient) async
        -> [String]
    {
        await stopAll(deployed.earlier.filter { $0 != deployed.stoppedFirst }, name: name, issuer: issuer, nex)
            + (deployed.stoppedFirst.map { [$0.id] } ?? [])
    }

    /// Stops every copy in `copies`; a copy that cannot be stopped (another issuer's, a node gone) is named in a
    /// notice and left running. Returns the ids stopped.
    static func stopAll(_ copies: [WorkloadCopy], name: String, issuer: NKeyPair, _ nex: NexControlClient) async
        -> [String]
    {
        var stopped: [String] = []
        for copy in copies {
            do {
                try await stop(copy, name: name, issuer: issuer, nex)
                stopped.append(copy.id)
            } catch {
                Output.notice("\(error)")
            }
        }
        return stopped
    }

    /// Stops `copy` with the issuer's token. A copy already gone counts as stopped.
    static func stop(_ copy: WorkloadCopy, name: String, issuer: NKeyPair, _ nex: NexControlClient) async throws {
        do {
            _ = try await nex.stop(workloadID: copy.id, node: copy.node, issuer: issuer)
        } catch let e as NexError where e.message.contains("no such workload") {
            return
        } catch let e as NexError {
            throw CLIError(
                "cannot stop the earlier \(name) (\(copy.id)) on node \(copy.node): \(e.message) "
                    + "(stop it yourself with `nex stop \(copy.id)`)")
        }
    }
}

/// Why no node took a deploy, named by its real cause.
enum NodeChoice {
    /// The valid workload types.
    static let types = ["native", "v8", "wasm"]

    /// The refusal for a deploy of `type` that no node's auction answered.
    static func whyNoNode(for type: String, _ nex: NexControlClient) async throws -> CLIError {
        let nodes = try await nex.ping()
        if nodes.isEmpty {
            return CLIError(
                "no Nex node answered: start one with `nex node up` (and check --server, NATS_URL or --context)")
        }
        let lameDuck = nodes.filter { $0.tags["nex.lameduck"] == "true" }
        if lameDuck.count == nodes.count {
            return CLIError(
                "every node (\(nodes.count)) is in lame duck mode and takes no new workloads: start another node")
        }
        return CLIError(
            "no node runs \(type) workloads (\(nodes.count) answered; a node runs the types in its "
                + "workload_types: see `nex node info NODE`)")
    }

    /// `type` if it is a valid workload type, else a refusal that lists them.
    static func checked(_ type: String) throws -> String {
        guard types.contains(type) else {
            throw CLIError("--type \(type) is not a workload type: use one of \(types.joined(separator: ", "))")
        }
        return type
    }
}
