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

extension NexCommand {
    /// For a mistyped subcommand (`nex nod ls`): what to say, with the nearest names; nil when the words name
    /// commands (the parser then has its say). Flags end the walk: they are the parser's to judge.
    public static func unknownSubcommand(in arguments: [String]) -> String? {
        var command: any ParsableCommand.Type = NexCommand.self
        var path = "nex"
        for word in arguments {
            if word.hasPrefix("-") || word == "help" { return nil }
            let subcommands = children(of: command)
            if subcommands.isEmpty { return nil }
            guard let next = subcommands.first(where: { $0.name == word }) else {
                let names = subcommands.map(\.name)
                let hint = Suggestions.nearest(to: word, in: names).map { " (did you mean `\(path) \($0)`?)" } ?? ""
                return "\(path) has no command \(word)\(hint); its commands: \(names.joined(separator: ", "))"
            }
            command = next.type
            path += " " + word
        }
        return nil
    }

    /// A command's subcommands with their names (the configured name, else the type's name in lower case).
    private static func children(of command: any ParsableCommand.Type) -> [(
        name: String, type: any ParsableCommand.Type
    )] {
        func open<C: ParsableCommand>(_ c: C.Type) -> [any ParsableCommand.Type] { C.configuration.subcommands }
        return open(command).map { sub in
            func name<C: ParsableCommand>(_ c: C.Type) -> String {
                C.configuration.commandName ?? String(describing: C.self).lowercased()
            }
            return (name(sub), sub)
        }
    }
}
