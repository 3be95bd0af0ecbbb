import ArgumentParser
import Foundation
import NexControlClient
import NexModels

/// `nex workload …`.
struct WorkloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload", abstract: "List the workloads on every node.", subcommands: [List.self])

    /// `nex workload ls` (also `nex ls`): every workload of the namespace on every node, gathered with WPING.
    struct List: AsyncParsableCommand, NexCLIRunnable {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List the workloads of this namespace on every node ($NEX.WPING).")

        @OptionGroup var global: GlobalOptions

        @Argument(help: "Only workloads with this id or name.")
        var workload: String?

        @Flag(help: "Print JSON.")
        var json = false

        func execute() async throws {
            let client = try await global.connect()
            let nodes: [WorkloadPingResponse]
            do {
                nodes = try await global.nex(client).workloadPing(
                    workload: workload)
            } catch {
                await client.close()
                throw error
            }
            await client.close()
            let rows = nodes.flatMap { node in node.runningMachines.map { (node, $0) } }.sorted {
                ($0.1.name, $0.0.nodeID, $0.1.id) < ($1.1.name, $1.0.nodeID, $1.1.id)
            }
            if json {
                print(try Output.json(rows.map { ListedWorkload(nodeID: $0.0.nodeID, workload: $0.1) }))
                return
            }
            guard !rows.isEmpty else {
                Output.say("No workloads in namespace \(global.namespace)")
                return
            }
            Output.say(
                Output.table(
                    ["NODE ID", "WORKLOAD ID", "NAME", "TYPE"],
                    rows.map { [$0.0.nodeID, $0.1.id, $0.1.name, $0.1.type] }
                ))
        }
    }
}

/// One row of `nex workload ls --json`.
struct ListedWorkload: Encodable {
    var nodeID: String
    var workload: MachineSummary

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case id, namespace, name, type
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(nodeID, forKey: .nodeID)
        try c.encode(workload.id, forKey: .id)
        try c.encode(workload.namespace, forKey: .namespace)
        try c.encode(workload.name, forKey: .name)
        try c.encode(workload.type, forKey: .type)
    }
}
