import ArgumentParser
import Foundation
import NexControlClient
import NexModels

/// `nex workload …`.
struct WorkloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload", abstract: "List the workloads on every node.", subcommands: [List.self])

    /// `nex workload ls` (also `nex ls`): every workload of the namespace on every node: WPING finds the nodes
    /// that run any, and one INFO each (asked at once) adds uptime and health.
    struct List: AsyncParsableCommand, NexCLIRunnable {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List the workloads of this namespace on every node.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Only workloads with this name, id or id prefix.")
        var workload: String?

        @Flag(help: "Print JSON.")
        var json = false

        func validate() throws {
            if workload?.isEmpty == true {
                throw ValidationError("give a workload name or id prefix, not an empty one")
            }
        }

        func execute() async throws {
            try await global.withClient { client in
                let nex = global.nex(client)
                // Unfiltered: every node with workloads answers, so the gather ends soon after the last one
                // (filtered, nodes without a match never answer and the gather waits out its window).
                let nodes = try await nex.workloadPing()
                let all = await Self.details(of: nodes, nex)
                // A name first; an id prefix only when no name matches.
                let named = all.filter { $0.name == workload }
                let rows =
                    workload == nil
                    ? all : named.isEmpty ? all.filter { $0.id.hasPrefix(workload!.lowercased()) } : named
                if json { return print(try Output.json(rows)) }
                guard !rows.isEmpty else {
                    if nodes.isEmpty, try await nex.ping().isEmpty {
                        throw CLIError("no Nex node answered: start one with `nex node up` (and check --server)")
                    }
                    if let workload {
                        throw CLIError(
                            "no workload named \(workload) (or with an id starting so) in namespace "
                                + "\(global.namespace)" + (all.isEmpty ? "" : "; \(all.count) others run: `nex ls`"))
                    }
                    return Output.say("No workloads in namespace \(global.namespace)")
                }
                Output.say(
                    Output.table(
                        ["NAMESPACE", "NAME", "TYPE", "WORKLOAD ID", "NODE ID", "UPTIME", "HEALTH"],
                        rows.map {
                            [
                                $0.namespace, $0.name, $0.type, $0.id, $0.nodeID,
                                $0.uptime.map(GoDuration.human) ?? "-",
                                $0.healthy.map { $0 ? "healthy" : "unhealthy" } ?? "-",
                            ]
                        }))
                let triggers = Self.triggerRows(rows)
                if !triggers.isEmpty {
                    Output.say("")
                    Output.say(
                        Output.table(
                            ["NAME", "TRIGGER", "SOURCE", "CONSUMER", "PENDING", "ACK PENDING", "REDELIVERED"],
                            triggers))
                }
            }
        }

        /// One row per trigger of the listed workloads; the copies of a workload share their consumers, so
        /// each trigger is listed once, with the counts of the first node that gave any.
        static func triggerRows(_ rows: [ListedWorkload]) -> [[String]] {
            var order: [[String]] = []
            var chosen: [[String]: (name: String, status: TriggerStatus)] = [:]
            for row in rows {
                for t in row.triggers ?? [] {
                    let key = [row.namespace, row.name, t.type, t.source, t.consumer ?? ""]
                    if let earlier = chosen[key] {
                        if earlier.status.pending == nil, t.pending != nil { chosen[key] = (row.name, t) }
                    } else {
                        order.append(key)
                        chosen[key] = (row.name, t)
                    }
                }
            }
            return order.compactMap { chosen[$0] }.map { name, t in
                [
                    name, t.type, t.source, t.consumer ?? "-", t.pending.map { "\($0)" } ?? "-",
                    t.ackPending.map { "\($0)" } ?? "-", t.redelivered.map { "\($0)" } ?? "-",
                ]
            }
        }

        /// Each workload with its node, and its uptime and health from that node's INFO (missing when the node
        /// did not answer it).
        static func details(of nodes: [WorkloadPingResponse], _ nex: NexControlClient) async -> [ListedWorkload] {
            let infos = await withTaskGroup(of: (String, InfoResponse?).self) { group in
                for node in nodes {
                    // No INFO answer: the listing shows "-" for uptime and health.
                    group.addTask { (node.nodeID, try? await nex.info(node: node.nodeID)) }
                }
                var infos: [String: InfoResponse] = [:]
                for await (node, info) in group { infos[node] = info }
                return infos
            }
            return nodes.flatMap { node in
                node.runningMachines.map { m in
                    let machine = infos[node.nodeID]?.machines.first { $0.workload.id == m.id }
                    return ListedWorkload(
                        nodeID: node.nodeID, id: m.id, namespace: m.namespace, name: m.name, type: m.type,
                        uptime: machine?.workload.uptime, healthy: machine?.healthy,
                        triggers: machine?.workload.triggers)
                }
            }.sorted { ($0.name, $0.nodeID, $0.id) < ($1.name, $1.nodeID, $1.id) }
        }
    }
}

/// One row of `nex ls`, and of `nex ls --json`.
struct ListedWorkload: Encodable {
    var nodeID: String
    var id: String
    var namespace: String
    var name: String
    var type: String
    /// Go duration text, as INFO gives it.
    var uptime: String?
    var healthy: Bool?
    /// A function's triggers and its consumers' counts, as its node's INFO gave them.
    var triggers: [TriggerStatus]?

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case id, namespace, name, type, uptime, healthy, triggers
    }
}
