import Foundation
import NATS
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import NexSandbox
import Testing

@testable import NexNode

/// Container images from a real registry (Debian's docker-registry on loopback), built with umoci and pushed with
/// skopeo, deployed with the real `nex` binary to a real `nex node up` in the namespace sandbox.
extension HeavyTests {
    @Suite(
        .timeLimit(.minutes(10)),
        .enabled(
            if: TestEnvironment.shouldRun(
                needing: NexSandboxTests.available && OCIRegistry.binary != nil && OCIImageLayout.toolsAvailable)))
    struct NexImageTests {
        let nex = TestEnvironment.builtProduct("nex")

        func run(_ args: [String], env: [String: String?]) async throws -> TestEnvironment.RunResult {
            try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
        }

        /// The acceptance scenario: `nex devrun oci://…:tag` resolves the tag, and the node pulls the image and runs
        /// it in the namespace sandbox as its config says (entrypoint and cmd, env under the deploy's, user from
        /// its /etc/passwd, a writable working directory it lacked). The node refuses a registry its config does
        /// not list, a tampered blob, and a deploy whose tag resolves to another digest than the one signed.
        @Test func anImageRunsAsItsConfigSaysAndTheNodeRefusesWhatItMustNot() async throws {
            try await NATSServer.with(.init(jetStream: true)) { server in
                let work = server.directory.path
                let layout = try await OCIImageLayout.busybox(
                    in: work + "/image",
                    files: [
                        "etc/greeting": "from the image",
                        "etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:4242:4243::/srv:/bin/sh\n",
                    ],
                    entrypoint: ["/bin/sh", "-c"],
                    cmd: [
                        "echo \"$GREETING $(cat /etc/greeting) uid=$(id -u) gid=$(id -g) cwd=$(pwd)\"; "
                            + "echo written > note && cat note; exec sleep 600"
                    ],
                    env: ["GREETING=hi"], user: "app", workingDirectory: "/srv")
                try await OCIRegistry.with { registry in
                    try await OCIRegistry.with { unlisted in
                        try await scenario(layout, registry: registry, unlisted: unlisted, server: server, work: work)
                    }
                }
            }
        }

        func scenario(
            _ layout: OCIImageLayout, registry: OCIRegistry, unlisted: OCIRegistry, server: NATSServer, work: String
        ) async throws {
            try await layout.push("base", to: registry, as: "demo/app", tag: "1")
            // Another image (its own layer, which the node has not cached) to tamper with.
            let second = try await OCIImageLayout.busybox(
                in: work + "/image2", files: ["etc/greeting": "another"], entrypoint: ["/bin/sh"])
            try await second.push("base", to: registry, as: "demo/tampered", tag: "1")
            try await layout.push("base", to: unlisted, as: "demo/app", tag: "1")

            let env: [String: String?] = ["NEX_HOME": work + "/nexhome", "DOCKER_CONFIG": work + "/docker"]
            let config = work + "/node.json"
            try #"{"machine_pool_size": 1, "oci_registries": {"\#(registry.address)": {"insecure": true}}}"#
                .write(toFile: config, atomically: true, encoding: .utf8)
            let node = try await PeerProcess.start(
                nex, ["node", "up", "-s", server.url, "--config", config], environment: env)
            _ = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            // Stopped whatever the scenario does: a failed expectation must not leave a node behind.
            do {
                try await withClient([server.url]) { client in
                    let logs = try await MessageRecorder(client, subject: "$NEX.logs.default.*.*.*")
                    let image = "oci://\(registry.address)/demo/app:1"
                    let deployed = try await run(
                        ["devrun", "--insecure-registry", image, "GREETING=hey", "-s", server.url], env: env)
                    #expect(deployed.status == 0, "\(deployed.stdout)\n\(deployed.stderr)")
                    let digest = try layout.digest(of: "base")
                    #expect((deployed.stdout + deployed.stderr).contains(digest), "devrun names the digest")
                    try await eventually("the service printed what its image set up", timeout: .seconds(30)) {
                        let lines = logs.messages.compactMap {
                            try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)).text  // not a log line
                        }
                        return lines.contains("hey from the image uid=4242 gid=4243 cwd=/srv")
                            && lines.contains("written")
                    }

                    // A registry the node's config does not list.
                    let refusedRegistry = try await run(
                        ["devrun", "--insecure-registry", "oci://\(unlisted.address)/demo/app:1", "-s", server.url],
                        env: env)
                    #expect(refusedRegistry.status != 0)
                    #expect(refusedRegistry.stderr.contains("oci_registries"), "\(refusedRegistry.stderr)")

                    // A blob changed in the registry's storage after the push.
                    let layer = try #require(
                        try Self.layerDigests(second, "base").first.map { String($0.dropFirst("sha256:".count)) })
                    let tamperedFile = registry.blobFile(layer)
                    var bytes = try Data(contentsOf: URL(fileURLWithPath: tamperedFile))
                    bytes[bytes.count / 2] ^= 0xff
                    try bytes.write(to: URL(fileURLWithPath: tamperedFile))
                    let tampered = try await run(
                        [
                            "devrun", "--insecure-registry", "oci://\(registry.address)/demo/tampered:1", "-s",
                            server.url,
                        ],
                        env: env)
                    #expect(tampered.status != 0)
                    #expect(tampered.stderr.contains("hash to"), "\(tampered.stderr)")

                    // A deploy signed for one digest naming a tag that resolves to another.
                    var control = NexControlClient(client: client, timeout: .seconds(30))
                    control.gatherTimeout = .milliseconds(500)
                    let ping = try #require(try await control.ping().first)
                    let other = "sha256:" + String(repeating: "ab", count: 32)
                    let request = try NexControlClient.makeDeployRequest(
                        name: "wrongdigest", type: "native", location: try #require(WorkloadLocation(url: image)),
                        hash: other, issuer: .generate(.account), publisher: .generate(.curve),
                        targetNode: ping.nodeID, targetXkey: ping.targetXkey)
                    do {
                        _ = try await control.deploy(request, to: ping.nodeID)
                        Issue.record("a deploy whose tag resolves to another digest was accepted")
                    } catch {
                        #expect("\(error)".contains(other), "\(error)")
                    }
                }
            } catch {
                _ = try? await node.terminate()  // try?: the scenario's own error is the one to report
                throw error
            }
            #expect(try await node.terminate() == 0)

            // A restarted node runs its recorded image again, from its cache: the registry is told to serve
            // nothing of the image any more (its blobs are gone from its storage).
            try FileManager.default.removeItem(atPath: registry.storage + "/docker/registry/v2/blobs")
            try await withClient([server.url]) { client in
                let logs = try await MessageRecorder(client, subject: "$NEX.logs.default.*.*.*")
                let again = try await PeerProcess.start(
                    nex, ["node", "up", "-s", server.url, "--config", config], environment: env)
                do {
                    try await eventually("the image runs again after the restart", timeout: .seconds(30)) {
                        logs.messages.contains {
                            // try?: a message that is not a log line is not the one waited for.
                            (try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)))?.text
                                == "hey from the image uid=4242 gid=4243 cwd=/srv"
                        }
                    }
                } catch {
                    _ = try? await again.terminate()  // try?: the wait's own error is the one to report
                    throw error
                }
                #expect(try await again.terminate() == 0)
            }
        }

        /// A deployed image gets an agent started ahead in its root: its next deploy takes that agent (as a warm
        /// agent is taken) and another is started ahead.
        @Test func theNextDeployOfAnImageTakesAnAgentStartedAhead() async throws {
            try await NATSServer.with(.init(jetStream: true)) { scratch in
                let layout = try await OCIImageLayout.busybox(
                    in: scratch.directory.path + "/image", entrypoint: ["/bin/sh", "-c"],
                    cmd: ["echo ready; exec sleep 600"])
                try await OCIRegistry.with { registry in
                    try await layout.push("base", to: registry, as: "demo/ahead", tag: "1")
                    let digest = try layout.digest(of: "base")
                    try await NexSandboxTests().withSandboxedNode({
                        $0.ociRegistries = [registry.address: .init(insecure: true)]
                    }) { h in
                        let pool = try #require(h.node.runtime?.pool)
                        func deploy() async throws -> String {
                            let request = try NexControlClient.makeDeployRequest(
                                name: "ahead", type: "native",
                                location: try #require(
                                    WorkloadLocation(url: "oci://\(registry.address)/demo/ahead@\(digest)")),
                                hash: digest, issuer: h.issuer, publisher: h.publisher, targetNode: h.node.nodeID,
                                targetXkey: h.node.xkey.publicKey)
                            return try await h.nex.deploy(request, to: h.node.nodeID).id
                        }
                        func agent(of workload: String) async throws -> String? {
                            try await h.nex.info(node: h.node.nodeID).machines.first { $0.workload.id == workload }?.id
                        }
                        let first = try await deploy()
                        let ahead = try await eventuallyValue("an agent is started ahead in the image's root") {
                            await pool.imageAgents.values.first
                        }
                        let firstAgent = try #require(try await agent(of: first))
                        #expect(firstAgent != ahead)
                        _ = try await h.nex.stop(workloadID: first, node: h.node.nodeID, issuer: h.issuer)
                        let second = try await deploy()
                        #expect(try await agent(of: second) == ahead)
                        // The next one is started: waited for (the test fails when none comes).
                        _ = try await eventuallyValue("another agent is started ahead") {
                            await pool.imageAgents.values.first { $0 != ahead }
                        }
                    }
                }
            }
        }

        /// The layer digests of `tag`'s manifest in the layout.
        static func layerDigests(_ layout: OCIImageLayout, _ tag: String) throws -> [String] {
            let manifest = try Data(contentsOf: URL(fileURLWithPath: layout.blob(try layout.digest(of: tag))))
            let object = try JSONSerialization.jsonObject(with: manifest) as? [String: Any]
            return (object?["layers"] as? [[String: Any]] ?? []).compactMap { $0["digest"] as? String }
        }
    }
}
