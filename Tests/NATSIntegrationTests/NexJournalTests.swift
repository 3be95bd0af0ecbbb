import Foundation
import Logging
import NATS
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// The journal's rule, through real nodes and agents: a record exists exactly when the node will run that
/// workload after a restart, and a deployer is never told "failed" about a workload that will run. Heavy: nodes
/// with agents, started and stopped in turn.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct NexJournalTests {
        /// `nex-agent` behind a gate: while the gate is closed every agent exits before its handshake, so the
        /// pool has none to give.
        struct GatedAgent {
            let path: String
            let gate: String

            init(in directory: URL) throws {
                gate = directory.appendingPathComponent("agents-may-start").path
                path = directory.appendingPathComponent("gated-agent.sh").path
                let agent = TestEnvironment.builtProduct("nex-agent")
                try "#!/bin/sh\n[ -e '\(gate)' ] || exit 1\nexec '\(agent)' \"$@\"\n".write(
                    toFile: path, atomically: true, encoding: .utf8)
                try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
                open()
            }

            func open() { FileManager.default.createFile(atPath: gate, contents: nil) }
            func close() { try? FileManager.default.removeItem(atPath: gate) }  // absent already: closed
        }

        /// The records in a node's journal, read as the node reads them.
        static func records(of node: NexNode) async -> [WorkloadRecord] {
            await WorkloadJournal(directory: node.home + "/workloads", xkey: node.xkey, logger: Logger(label: "test"))
                .load()
        }

        func script(_ body: String, in server: NATSServer) throws -> String {
            try NexWorkloadTests().script(body, in: server)
        }

        /// Item 7 of issue 24: a deploy still waiting for its agent when the node shuts down is answered with an
        /// error, so its record goes; it used to stay, and the workload ran after the restart beside the copy
        /// its deployer sent again.
        @Test func aDeployCutShortByAShutdownLeavesNoRecord() async throws {
            try await NexWorkloadTests().withNode({
                $0.agentHandshakeTimeoutMs = 60_000
                $0.agentPath = "/bin/true"  // exits before its handshake: the deploy waits for an agent
            }) { h in
                let file = try script("exec sleep 60", in: h.server)
                let cut = Task { try await h.deploy(file: file, name: "cut") }
                _ = try await eventuallyValue("the deploy waits for an agent") {
                    try await h.nex.info(node: h.node.nodeID).machines.first { $0.workload.name == "cut" }
                }
                #expect(await Self.records(of: h.node).count == 1, "recorded before the answer")
                await h.node.stop(graceful: true)
                await #expect(throws: (any Error).self) { try await cut.value }
                #expect(await Self.records(of: h.node).isEmpty, "the deployer was told it failed: no record may stay")
            }
        }

        /// Item 5: an essential workload whose restart finds no agent keeps its record and is tried again after
        /// the next backoff; it used to be dropped, record and all, and was gone after the next node restart.
        @Test func anEssentialRestartThatFindsNoAgentIsTriedAgain() async throws {
            try await withServerAndClient(.init(jetStream: true)) { server, _ in
                let gated = try GatedAgent(in: server.directory)
                try await NexWorkloadTests().withNode({
                    $0.agentPath = gated.path
                    // Long enough for an agent on a loaded machine; a restart waits this long for none to come.
                    $0.agentHandshakeTimeoutMs = 15_000
                    $0.restartBackoffInitialMs = 100
                    $0.restartBackoffMaxMs = 400
                    $0.maxRestarts = 0
                }) { h in
                    try await eventually("a warm agent", timeout: .seconds(30)) {
                        (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 1
                    }
                    let marker = h.server.directory.appendingPathComponent("crash").path
                    let crasher = try script("while [ ! -e '\(marker)' ]; do sleep 0.05; done; exit 3", in: h.server)
                    _ = try await h.deploy(file: crasher, name: "crasher", essential: true)
                    try await eventually("the pool refilled", timeout: .seconds(30)) {
                        (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 1
                    }
                    // No agent starts from now on, and the warm one goes to another workload.
                    gated.close()
                    _ = try await h.deploy(file: try script("exec sleep 60", in: h.server), name: "hog")
                    FileManager.default.createFile(atPath: marker, contents: nil)

                    // The restart found no agent: the record stays, with the failed run counted.
                    try await eventually("a restart without an agent is rescheduled", timeout: .seconds(90)) {
                        await Self.records(of: h.node).contains { $0.name == "crasher" && $0.retryCount >= 2 }
                    }
                    let machines = try await h.nex.info(node: h.node.nodeID).machines
                    #expect(machines.contains { $0.workload.name == "crasher" })
                    // Agents come back: so does the workload.
                    gated.open()
                    try await eventually("restarted once agents start again", timeout: .seconds(90)) {
                        h.workloadEvents("workload_deployed").filter { $0.workloadName == "crasher" }.count >= 2
                    }
                }
            }
        }

        /// Item 7, its second half: an essential restart whose record cannot be written does not run (it would
        /// be a workload the node does not run after its own restart); the exit says why.
        @Test func aRestartThatCannotBeRecordedDoesNotRun() async throws {
            try await NexWorkloadTests().withNode({
                $0.restartBackoffInitialMs = 100
                $0.restartBackoffMaxMs = 400
            }) { h in
                let marker = h.server.directory.appendingPathComponent("crash").path
                let crasher = try script("while [ ! -e '\(marker)' ]; do sleep 0.05; done; exit 3", in: h.server)
                _ = try await h.deploy(file: crasher, name: "crasher", essential: true)
                // The journal's directory becomes a file: no record can be written (root ignores permissions).
                let journal = h.node.home + "/workloads"
                try FileManager.default.moveItem(atPath: journal, toPath: journal + ".aside")
                FileManager.default.createFile(atPath: journal, contents: nil)
                defer {
                    try? FileManager.default.removeItem(atPath: journal)  // put back for the node's stop
                    try? FileManager.default.moveItem(atPath: journal + ".aside", toPath: journal)
                }
                FileManager.default.createFile(atPath: marker, contents: nil)
                try await eventually("the exit is reported with its reason") {
                    h.workloadEvents("workload_undeployed").contains { $0.message.contains("not restarted") }
                }
                let machines = try await h.nex.info(node: h.node.nodeID).machines
                #expect(machines.isEmpty)
                #expect(h.workloadEvents("workload_deployed").count == 1)
            }
        }

        /// Item 6: a record whose restore failed for now (no agent in time) waits for its retry; a newer deploy
        /// of the same name meanwhile wins, also when both records meet at the next start. The older record used
        /// to come back at that start and make the newer one a "duplicate" to delete.
        @Test func aRecordWaitingForItsRetryGivesWayToANewerDeploy() async throws {
            try await withServerAndClient(.init(jetStream: true)) { server, client in
                let gated = try GatedAgent(in: server.directory)
                var config = NodeConfiguration()
                config.noSandbox = true
                config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
                config.agentPath = gated.path
                // Long enough for an agent on a loaded machine; the restore waits this long for none to come.
                config.agentHandshakeTimeoutMs = 15_000
                config.restartBackoffInitialMs = 60_000  // the retry does not come within the test
                config.restartBackoffMaxMs = 60_000
                let identity = NodeIdentity.ephemeral()
                let nex = NexControlClient(client: client)
                let sleeper = try script("exec sleep 60", in: server)
                let (location, hash) = try await nex.uploadArtifact(file: sleeper, key: "svc")
                func request(for node: NexNode) throws -> DeployRequest {
                    try NexControlClient.makeDeployRequest(
                        name: "svc", type: "native", location: location, hash: hash, issuer: .generate(.account),
                        publisher: .generate(.curve), targetNode: node.nodeID, targetXkey: node.xkey.publicKey)
                }

                let first = NexNode(configuration: config, client: client, identity: identity)
                try await first.start()
                let old = try await nex.deploy(try request(for: first), to: first.nodeID)
                await first.stop(graceful: true)

                // No agent in time: the restore fails for now, and the record waits for its retry.
                gated.close()
                let second = NexNode(configuration: config, client: client, identity: identity)
                try await second.start()
                #expect(try await nex.info(node: second.nodeID).machines.isEmpty)
                #expect(await Self.records(of: second).map(\.id) == [old.id])
                // Meanwhile the deployer sends it again, and the node runs the new one.
                gated.open()
                let new = try await eventuallyValue("the new deploy runs", timeout: .seconds(60)) {
                    try? await nex.deploy(try request(for: second), to: second.nodeID)
                }
                await second.stop(graceful: true)

                // Both records meet at the next start: the newer one wins, the older one goes.
                let third = NexNode(configuration: config, client: client, identity: identity)
                try await third.start()
                #expect(try await nex.info(node: third.nodeID).machines.map(\.workload.id) == [new.id])
                #expect(await Self.records(of: third).map(\.id) == [new.id])
                await third.stop(graceful: true)
            }
        }
    }
}
