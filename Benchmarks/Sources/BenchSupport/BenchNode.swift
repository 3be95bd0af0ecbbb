public import Foundation
import Logging
public import NATS
public import NKeys
public import NexControlClient
public import NexModels
public import NexNode
public import NexProcess

/// A nats-server with JetStream and a Nex node in this process (no sandbox, release agents), with keys to
/// deploy: what the deploy and function benchmarks share.
public struct BenchNode: Sendable {
    public let work: String
    public let server: NATSServerProcess
    public let client: NATSClient
    public let node: NexNode
    public let nex: NexControlClient
    public let issuer = NKeyPair.generate(.account)
    public let publisher = NKeyPair.generate(.curve)

    /// Starts the server and a node whose configuration `configure` adjusts (`no_sandbox` and `agent_path` set).
    public static func start(
        name: String, agent: String, configure: (inout NodeConfiguration) -> Void = { _ in }
    ) async throws -> BenchNode {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        guard let binary = NATSServerProcess.findBinary(nexHome: work) else { fatalError("nats-server not found") }
        let server = try await NATSServerProcess.start(
            binary: binary, directory: work + "/nats",
            config: "host: 127.0.0.1\nport: -1\njetstream { store_dir: \"\(work)/js\" }\n")
        let client = NATSClient(configuration: .init(servers: [server.url]))
        try await client.connect()
        var config = NodeConfiguration()
        config.noSandbox = true
        config.agentPath = agent
        config.defaultResourceDir = work + "/home"
        configure(&config)
        let node = NexNode(
            configuration: config, client: client,
            logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await node.start()
        var nex = NexControlClient(client: client)
        nex.gatherTimeout = .milliseconds(300)
        nex.timeout = .seconds(30)  // a service's stop may take its whole 5 s grace and more
        return BenchNode(work: work, server: server, client: client, node: node, nex: nex)
    }

    /// An uploaded artifact.
    public struct Artifact: Sendable {
        public var location: WorkloadLocation
        public var hash: String

        public init(location: WorkloadLocation, hash: String) {
            self.location = location
            self.hash = hash
        }
    }

    /// Uploads `file` to the object store (outside any timed region).
    public func upload(_ file: String, key: String) async throws -> Artifact {
        let (location, hash) = try await nex.uploadArtifact(file: file, key: key)
        return Artifact(location: location, hash: hash)
    }

    /// Deploys an uploaded artifact: the request the benchmarks time.
    public func deploy(
        _ artifact: Artifact, name: String, type: String, triggers: [String] = [],
        environment: [String: String] = [:], maxConcurrency: Int? = nil, triggerList: [WorkloadTrigger]? = nil
    ) async throws -> RunResponse {
        var request = try NexControlClient.makeDeployRequest(
            name: name, type: type, location: artifact.location, hash: artifact.hash, environment: environment,
            issuer: issuer, publisher: publisher, targetNode: node.nodeID, targetXkey: node.xkey.publicKey,
            triggerSubjects: triggers, maxConcurrency: maxConcurrency)
        request.triggers = triggerList
        return try await nex.deploy(request, to: node.nodeID)
    }

    /// Stops the node and server and removes the work directory.
    public func stop() async {
        await node.stop(graceful: true)
        await client.close()
        await server.stop()
        try? FileManager.default.removeItem(atPath: work)
    }
}

/// The `p` (0…1) quantile of `values` (nearest rank); NaN when there are none (a column that was not measured).
public func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
}
