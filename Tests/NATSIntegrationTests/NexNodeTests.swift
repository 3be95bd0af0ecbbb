import Foundation
import Logging
import NATS
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import NexNode
import ServiceLifecycle
import Testing

@Suite(.timeLimit(.minutes(1))) struct NexNodeControlAPITests {
    func withNode<T>(
        _ configure: (inout NodeConfiguration) -> Void = { _ in },
        _ body: (NexNode, NexControlClient, NATSClient, EventRecorderOfSubjects) async throws -> T
    ) async throws -> T {
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            var config = NodeConfiguration()
            config.noSandbox = true
            config.workloadTypes = [.native, .v8]
            config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
            configure(&config)
            let events = try await EventRecorderOfSubjects(client, subject: "$NEX.events.>")
            let node = NexNode(configuration: config, client: client, heartbeatInterval: .milliseconds(200))
            try await node.start()
            var nex = NexControlClient(client: client, timeout: nodeAnswerTimeout)
            nex.gatherTimeout = .milliseconds(400)
            nex.gatherStall = .milliseconds(150)
            do {
                let result = try await body(node, nex, client, events)
                await node.stop(graceful: true)
                return result
            } catch {
                await node.stop(graceful: true)
                throw error
            }
        }
    }

    @Test func startAndDiscover() async throws {
        try await withNode { node, nex, client, events in
            // Scatter-gather ends after a fixed window: on a loaded machine the one answer can miss a round, so
            // wait for the round that has it.
            let ping = try await eventuallyValue("the node answers $NEX.PING") { try await nex.ping().first }
            #expect(try await nex.ping().count <= 1)
            #expect(ping.nodeID.hasPrefix("N") && ping.nodeID == node.nodeID && ping.targetXkey.hasPrefix("X"))
            #expect(ping.tags["nex.os"] == "linux" && ping.tags["nex.arch"] != nil && ping.tags["nex.cpucount"] != nil)
            #expect(ping.tags["nex.unsafe"] == "true")
            #expect(try await nex.ping(node: node.nodeID).nodeID == node.nodeID)
            try await events.waitFor("node_started") { $0.hasSuffix(".system.node_started") }
            // The raw control API: a plain request, an envelope back.
            let raw = try await client.request([UInt8](), to: "$NEX.PING")
            let envelope = try JSONSerialization.jsonObject(with: Data(raw.bytes)) as? [String: Any]
            #expect(envelope?["type"] as? String == "io.nats.nex.v1.ping_response")
            #expect((envelope?["data"] as? [String: Any])?["node_id"] as? String == node.nodeID)
        }
    }

    @Test func infoAndAuction() async throws {
        try await withNode({ $0.tags = ["zone": "EU-1"] }) { node, nex, _, _ in
            let info = try await nex.info(node: node.nodeID)
            #expect(info.machines.isEmpty && info.supportedWorkloadTypes == ["native", "v8"])
            #expect((info.memory?.total ?? 0) > 0 && info.publicXkey == node.xkey.publicKey)
            let matching = try await eventuallyValue("the node answers a matching auction") {
                try await nex.auction(AuctionRequest(os: "linux", tags: ["zone": "eu-1"])).first
            }
            #expect(matching.nodeID == node.nodeID)
            #expect(try await nex.auction(AuctionRequest(workloadTypes: ["wasm"])).isEmpty)
            #expect(try await nex.auction(AuctionRequest(sandboxed: true)).isEmpty)
            #expect(try await nex.auction(AuctionRequest(tags: ["zone": "us"])).isEmpty)
        }
    }

    /// A malformed auction body is answered with the error (it used to match every node); an empty one
    /// matches every node.
    @Test func malformedAuctionsAreAnsweredWithTheError() async throws {
        try await withNode { node, _, client, _ in
            let bad = try await client.request("not json", to: "$NEX.AUCTION", timeout: .seconds(10))
            let envelope = try JSONSerialization.jsonObject(with: Data(bad.bytes)) as? [String: Any]
            #expect(envelope?["type"] as? String == "io.nats.nex.v1.auction_response")
            #expect(
                (envelope?["error"] as? String)?.hasPrefix("malformed auction request") == true, "\(envelope ?? [:])")
            let empty = try await client.request([UInt8](), to: "$NEX.AUCTION", timeout: .seconds(10))
            let data = (try JSONSerialization.jsonObject(with: Data(empty.bytes)) as? [String: Any])?["data"]
            #expect((data as? [String: Any])?["node_id"] as? String == node.nodeID)
        }
    }

    @Test func deploysAreCheckedAndRefusedVerbatim() async throws {
        try await withNode { node, nex, client, _ in
            let issuer = NKeyPair.generate(.account)
            let publisher = NKeyPair.generate(.curve)
            func request(name: String, triggers: [String] = [], type: String = "native") throws -> DeployRequest {
                try NexControlClient.makeDeployRequest(
                    name: name, type: type, location: WorkloadLocation(bucket: "B", key: "k"),
                    hash: String(repeating: "0", count: 64), issuer: issuer, publisher: publisher,
                    targetNode: node.nodeID, targetXkey: node.xkey.publicKey, triggerSubjects: triggers)
            }
            func refusal(_ r: DeployRequest) async -> String? {
                do {
                    _ = try await nex.deploy(r, to: node.nodeID)
                    return nil
                } catch let e as NexError where e.code == .refused {
                    return e.message
                } catch {
                    return "unexpected \(error)"
                }
            }
            #expect(await refusal(try request(name: "echo service"))?.contains("invalid workload name") == true)
            #expect(
                await refusal(try request(name: "f", triggers: ["$SYS.>"], type: "v8"))?.contains("not allowed") == true
            )
            #expect(await refusal(try request(name: "w", type: "wasm"))?.contains("not supported") == true)
            #expect(await refusal(try request(name: "echoservice"))?.contains("artifact nats://B/k not found") == true)
            // Malformed JSON gets an error envelope, not silence.
            let raw = try await client.request(
                "{not json", to: NexSubjects.deploy(namespace: "default", node: node.nodeID))
            let env = try JSONDecoder().decode(Envelope<RunResponse>.self, from: Data(raw.bytes))
            #expect(env.isFailure && env.error?.contains("malformed deploy request") == true)
            let stop = await #expect(throws: NexError.self) {
                try await nex.stop(workloadID: "nope", node: node.nodeID, issuer: issuer)
            }
            #expect(stop?.message == "no such workload")
        }
    }

    @Test func artifactsAreDownloadedAndCheckedAgainstTheSignedHash() async throws {
        try await withNode({ $0.nodeLimits.maxWorkloadBytes = 1000 }) { node, nex, _, _ in
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-art-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            func upload(_ name: String, _ content: String) async throws -> (WorkloadLocation, String) {
                let path = dir.appendingPathComponent(name).path
                try Data(content.utf8).write(to: URL(fileURLWithPath: path))
                return try await nex.uploadArtifact(file: path, key: name)
            }
            let issuer = NKeyPair.generate(.account)
            let publisher = NKeyPair.generate(.curve)
            func deploy(_ location: WorkloadLocation, hash: String) async -> String {
                do {
                    let r = try NexControlClient.makeDeployRequest(
                        name: "svc", type: "native", location: location, hash: hash, issuer: issuer,
                        publisher: publisher, targetNode: node.nodeID, targetXkey: node.xkey.publicKey)
                    _ = try await nex.deploy(r, to: node.nodeID)
                    return "accepted"
                } catch {
                    return "\(error)"
                }
            }
            let (good, goodHash) = try await upload("good", "the real service")
            // Verified and handed to an agent, which cannot exec plain text: refused with the reason.
            #expect(await deploy(good, hash: goodHash).contains("Exec format error"))
            // The issuer signed the hash of other bytes than those stored: refused (Nex 0.x never compared).
            let (_, otherHash) = try await upload("other", "something else")
            #expect(await deploy(good, hash: otherHash).contains("does not match the signed hash"))
            let (big, bigHash) = try await upload("big", String(repeating: "x", count: 5000))
            #expect(await deploy(big, hash: bigHash).contains("exceeds node_limits.max_workload_bytes"))
            #expect(
                await deploy(WorkloadLocation(bucket: "NEXCLIFILES", key: "none"), hash: goodHash).contains("not found")
            )
        }
    }

    @Test func lameDuckRefusesDeploysAndSaysSo() async throws {
        try await withNode { node, nex, _, events in
            let response = try await nex.lameDuck(node: node.nodeID)
            #expect(response.success && response.nodeID == node.nodeID)
            try await events.waitFor("node_entered_lameduck") { $0.hasSuffix(".system.node_entered_lameduck") }
            #expect(try await nex.ping(node: node.nodeID).tags["nex.lameduck"] == "true")
            let r = try NexControlClient.makeDeployRequest(
                name: "x", type: "native", location: WorkloadLocation(bucket: "B", key: "k"),
                hash: String(repeating: "0", count: 64), issuer: .generate(.account), publisher: .generate(.curve),
                targetNode: node.nodeID, targetXkey: node.xkey.publicKey)
            let error = await #expect(throws: NexError.self) { try await nex.deploy(r, to: node.nodeID) }
            #expect(error?.message.contains("lame duck") == true)
            #expect(try await nex.auction(AuctionRequest()).isEmpty)
        }
    }

    @Test func runsAsAServiceWithHeartbeatsAndStopsGracefully() async throws {
        try await withServerAndClient { _, client in
            let events = try await EventRecorderOfSubjects(client, subject: "$NEX.events.system.*")
            var config = NodeConfiguration()
            config.noSandbox = true
            let node = NexNode(configuration: config, client: client, heartbeatInterval: .milliseconds(100))
            let group = ServiceGroup(
                services: [node], gracefulShutdownSignals: [],
                logger: Logger(label: "t", factory: { _ in SwiftLogNoOpLogHandler() }))
            let running = Task { try await group.run() }
            // Starting takes the warm pool: seconds when the whole suite starts at once.
            try await events.waitFor("node_started", timeout: .seconds(60)) { $0.hasSuffix(".node_started") }
            try await events.waitFor("heartbeat") { $0.hasSuffix(".heartbeat") }
            await group.triggerGracefulShutdown()
            try await running.value
            try await events.waitFor("node_stopped") { $0.hasSuffix(".node_stopped") }
        }
    }
}

/// Records the subjects of messages on a subscription.
final class EventRecorderOfSubjects: Sendable {
    let recorder: MessageRecorder

    init(_ client: NATSClient, subject: String) async throws {
        recorder = try await MessageRecorder(client, subject: subject)
    }

    func waitFor(
        _ what: String, timeout: Duration = .seconds(10), _ match: @escaping (String) -> Bool
    ) async throws {
        try await eventually(what, timeout: timeout) { self.recorder.messages.contains { match($0.subject) } }
    }
}
