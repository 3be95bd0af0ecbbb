import NexModels
import NexProcess

/// The `none` driver (`no_sandbox: true`): each agent is a plain child process of the node, with the node's
/// user and view of the host. Fast and unsafe; the node tags itself `nex.unsafe=true`.
public struct ProcessDriver: SandboxDriver {
    public var name: String { "none" }
    public var isSandboxed: Bool { false }
    /// Called with each line the agent itself writes (not its workload's output, which goes to logs).
    let agentOutput: @Sendable (String, String) -> Void

    public init(agentOutput: @escaping @Sendable (_ agentID: String, _ line: String) -> Void = { _, _ in }) {
        self.agentOutput = agentOutput
    }

    public func launch(_ spec: AgentLaunchSpec) async throws -> any AgentSandbox {
        let process = try await ChildProcess.spawn(
            executable: spec.agentExecutable, arguments: [],
            environment: [
                AgentEnvironment.agentID: spec.agentID,
                AgentEnvironment.linkFD: String(AgentEnvironment.linkDescriptor),
                "PATH": "/usr/local/bin:/usr/bin:/bin",
            ], directory: spec.workDirectory, stdout: .pipe, stderr: .pipe, extraDescriptors: [spec.linkDescriptor])
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            let output = agentOutput
            let id = spec.agentID
            LineReader.start(fd: fd) { output(id, $0) }
        }
        return ProcessSandbox(agentID: spec.agentID, workDirectoryInside: spec.workDirectory, process: process)
    }
}

struct ProcessSandbox: AgentSandbox {
    let agentID: String
    let workDirectoryInside: String
    let process: ChildProcess

    func wait() async -> ChildProcess.Termination { await process.wait() }

    func destroy(grace: Duration) async { await process.terminate(grace: grace) }

    /// The host's network is the agent's: nothing to open, the addresses stay as they are.
    func allowConnections(to endpoints: [NetworkEndpoint]) async throws -> [NetworkEndpoint] { endpoints }
}
