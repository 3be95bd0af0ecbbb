import ArgumentParser
import NexNode

/// `nex`: run nodes and control the workloads on them.
public struct NexCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "nex",
        abstract: "The NATS Execution Engine: run nodes on your NATS deployment and deploy workloads to them.",
        version: NexNode.version,
        subcommands: [
            NodeCommand.self, DevRunCommand.self, RunCommand.self, StopCommand.self, LogsCommand.self,
            EventsCommand.self, LameDuckCommand.self, RequestCommand.self, RootfsCommand.self, WorkloadCommand.self,
            WorkloadCommand.List.self, UICommand.self,
        ]
    )

    public init() {}
}

/// What a leaf command does. `nex`'s main calls ``execute()`` directly: with the existential
/// `AsyncParsableCommand`, `run()` resolved to the synchronous default (which only prints help).
public protocol NexCLIRunnable {
    func execute() async throws
}

extension NexCLIRunnable where Self: AsyncParsableCommand {
    public mutating func run() async throws { try await execute() }
}
