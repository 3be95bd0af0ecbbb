import Foundation
import NATS
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// Records replayed by a node in this process that keeps its identity between two runs.
@Suite(.timeLimit(.minutes(2))) struct NexRestoreTests {
    /// A graceful stop keeps the record; a node whose configuration now refuses the workload for good drops it
    /// (and says why), while a node that still accepts it brings it back under its id.
    @Test func recordsComeBackOrGoForGood() async throws {
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            var config = NodeConfiguration()
            config.noSandbox = true
            config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
            let identity = NodeIdentity.ephemeral()
            let nex = NexControlClient(client: client)
            let script = server.directory.appendingPathComponent("sleeper.sh").path
            try "#!/bin/sh\necho up\nexec sleep 60\n".write(toFile: script, atomically: true, encoding: .utf8)
            let (location, hash) = try await nex.uploadArtifact(file: script, key: "sleeper")

            var first = NexNode(configuration: config, client: client, identity: identity)
            try await first.start()
            let request = try NexControlClient.makeDeployRequest(
                name: "sleeper", type: "native", location: location, hash: hash, issuer: .generate(.account),
                publisher: .generate(.curve), targetNode: first.nodeID, targetXkey: first.xkey.publicKey)
            let run = try await nex.deploy(request, to: first.nodeID)
            await first.stop(graceful: true)
            let journal = first.home + "/workloads/\(run.id).json"
            #expect(FileManager.default.fileExists(atPath: journal))

            // The same identity and configuration: back under its id.
            first = NexNode(configuration: config, client: client, identity: identity)
            try await first.start()
            #expect(try await nex.info(node: first.nodeID).machines.map(\.workload.id) == [run.id])
            await first.stop(graceful: true)
            #expect(FileManager.default.fileExists(atPath: journal))

            // Native workloads are no longer allowed here: refused for good, the record goes.
            var narrowed = config
            narrowed.workloadTypes = [.v8]
            let second = NexNode(configuration: narrowed, client: client, identity: identity)
            try await second.start()
            #expect(try await nex.info(node: second.nodeID).machines.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: journal))
            await second.stop(graceful: true)
        }
    }
}
