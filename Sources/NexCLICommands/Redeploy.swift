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
    /// Copies of `name` in the namespace on `nodes`, from one INFO each, asked all at once: every node answers
    /// INFO (a scatter to nodes that may hold none would wait out its whole window). A node that does not answer
    /// holds no copy this deploy can replace.
    static func earlierCopies(of name: String, on nodes: [String], _ nex: NexControlClient) async -> [WorkloadCopy] {
        await withTaskGroup(of: [WorkloadCopy].self) { group in
            for node in nodes {
                group.addTask {
                    // No answer (a node stopping, or busy past the timeout): it has no copy we can replace.
                    guard let info = try? await nex.info(node: node) else { return [] }
                    return info.machines.filter { $0.workload.name == name }.map {
                        WorkloadCopy(id: $0.workload.id, node: node)
                    }
                }
            }
            var copies: [WorkloadCopy] = []
            for await found in group { copies += found }
            return copies.sorted { ($0.node, $0.id) < ($1.node, $1.id) }
        }
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
