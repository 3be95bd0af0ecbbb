import Foundation
import NATS
import NATSTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Acceptance scenario 15: three `nex node up` processes on a three-server JetStream cluster.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct NexClusterTests {
        let nex = TestEnvironment.builtProduct("nex")
        static let function = TestEnvironment.packageRoot.appendingPathComponent("examples/echofunction.js").path

        func run(_ args: [String], env: [String: String?] = [:]) async throws -> TestEnvironment.RunResult {
            try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
        }

        struct Node {
            let process: PeerProcess
            let id: String
            let home: String
        }

        /// The cluster member whose connections include the node's control subscription.
        func server(of node: Node, in cluster: NATSCluster) -> NATSServer? {
            cluster.servers.first { server in
                guard let port = server.monitoringPort,
                    let url = URL(string: "http://127.0.0.1:\(port)/connz?subs=1"),
                    let data = try? Data(contentsOf: url),
                    let connz = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                    let connections = connz["connections"] as? [[String: Any]]
                else { return false }
                return connections.contains {
                    ($0["subscriptions_list"] as? [String])?.contains("$NEX.PING.\(node.id)") == true
                }
            }
        }

        /// Sends `count` requests and returns how many were answered with the payload.
        func answered(_ count: Int, subject: String, client: NATSClient) async -> Int {
            var ok = 0
            for i in 0..<count {
                if let reply = try? await client.request("m\(i)", to: subject, timeout: .seconds(2)),
                    reply.string == "m\(i)"
                {
                    ok += 1
                }
            }
            return ok
        }

        @Test func threeNodesOnAThreeServerCluster() async throws {
            let cluster = try await NATSCluster.start(size: 3, jetStream: true)
            defer { cluster.stop() }
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("nex-cluster-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: work) }
            let urls = cluster.urls.joined(separator: ",")
            let config = work + "/node.json"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try #"{"no_sandbox": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
            let devEnv: [String: String?] = ["NEX_HOME": work + "/developer"]

            var nodes: [Node] = []
            for i in 0..<3 {
                let home = work + "/node\(i)"
                let process = try await PeerProcess.start(
                    nex, ["node", "up", "-s", urls, "--config", config], environment: ["NEX_HOME": home])
                let up = try await eventuallyValue("node \(i) is up") { process.output.first { $0.contains(" is up") } }
                let id = try #require(
                    up.split(separator: " ").map(String.init).first { $0.hasPrefix("N") && $0.count == 56 })
                nodes.append(Node(process: process, id: id, home: home))
            }
            try await eventually("three nodes answer", timeout: .seconds(20)) {
                (try? await run(["node", "ls", "--json", "-s", urls]))?.stdout.components(separatedBy: "\"node_id\"")
                    .count
                    == 4
            }

            // devrun's auction spreads deploys: three different workloads land on three different nodes.
            for name in ["alpha", "beta", "gamma"] {
                let file = work + "/\(name).js"
                try FileManager.default.copyItem(atPath: Self.function, toPath: file)
                let result = try await run(["devrun", file, "--trigger_subject=\(name).echo", "-s", urls], env: devEnv)
                #expect(result.status == 0, "\(result.stderr)")
            }
            let listed = try await run(["ls", "--json", "-s", urls])
            let rows = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]] ?? []
            #expect(Set(rows.compactMap { $0["node_id"] as? String }).count == 3, "\(listed.stdout)")
            #expect(try await run(["workload", "ls", "-s", urls]).stdout.contains("alphajs"))

            // One function on two nodes: one queue group across them, both serve.
            let shared = work + "/shared.js"
            try FileManager.default.copyItem(atPath: Self.function, toPath: shared)
            _ = try await run(
                ["devrun", shared, "--trigger_subject=shared.echo", "--no-stop", "-s", urls], env: devEnv)
            let firstHolder = try #require(
                try await run(["ls", "sharedjs", "--json", "-s", urls]).stdout.split(separator: "\"").first {
                    $0.hasPrefix("N") && $0.count == 56
                }.map(String.init))
            let other = try #require(nodes.first { $0.id != firstHolder })
            let run2 = try await run(
                [
                    "run", "nats://NEXCLIFILES/sharedjs", other.id, "--name", "sharedjs", "--type", "v8",
                    "--trigger_subject", "shared.echo", "--issuer", work + "/developer/issuer.nk",
                    "--xkey", work + "/developer/publisher.xk", "-s", urls,
                ])
            #expect(run2.status == 0, "\(run2.stderr)")

            try await withClient(cluster.urls, configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
                let events = try await MessageRecorder(client, subject: "$NEX.events.default.function_exec_succeeded")
                #expect(await answered(40, subject: "shared.echo", client: client) == 40)
                try await eventually("both nodes served") {
                    let sources = Set(
                        events.messages.compactMap { m in
                            (try? JSONSerialization.jsonObject(with: Data(m.payload)) as? [String: Any])?["source"]
                                as? String
                        })
                    return sources.contains(firstHolder) && sources.contains(other.id)
                }

                // A node killed with SIGKILL: once its loss is seen, the other one answers every request.
                let victim = try #require(nodes.first { $0.id == firstHolder })
                victim.process.signalGroup(SIGKILL)
                _ = try await victim.process.waitForExit()
                try await eventually("the killed node is gone") {
                    (try? await run(["ls", "sharedjs", "--json", "-s", urls]))?.stdout.contains(victim.id) == false
                }
                #expect(await answered(20, subject: "shared.echo", client: client) == 20)

                // The server the surviving holder uses dies: its control API and triggers carry on through another.
                let survivor = other
                let dying = try #require(server(of: survivor, in: cluster))
                dying.kill()
                try await eventually("the node answers through another server", timeout: .seconds(10)) {
                    (try? await run(["node", "info", survivor.id, "--json", "--timeout", "1", "-s", urls]))?.status == 0
                }
                #expect(await answered(20, subject: "shared.echo", client: client) == 20)
                #expect(server(of: survivor, in: cluster) != nil)
            }
            for node in nodes where node.id != firstHolder {
                #expect(try await node.process.terminate() == 0)
            }
        }

        /// A single server restarted on its store: the node reconnects, its trigger answers again and the KV
        /// host service (a JetStream bucket on that store) works again.
        @Test func aServerRestartedOnItsStoreBringsTheNodeBack() async throws {
            try await NATSServer.with(.init(jetStream: true)) { first in
                let url = first.url
                let work = first.directory.path
                let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
                let config = work + "/node.json"
                try #"{"no_sandbox": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
                let node = try await PeerProcess.start(
                    nex, ["node", "up", "-s", url, "--config", config], environment: env)
                _ = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
                let kv = TestEnvironment.packageRoot.appendingPathComponent("examples/kv.js").path
                let deployed = try await run(["devrun", kv, "--trigger_subject=kv.demo", "-s", url], env: env)
                #expect(deployed.status == 0, "\(deployed.stderr)")
                try await withClient([url], configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
                    func kvAnswers(_ payload: String) async -> Bool {
                        guard let reply = try? await client.request(payload, to: "kv.demo", timeout: .seconds(2)) else {
                            return false
                        }
                        return reply.string.contains(#""hello2":"\#(payload)""#)
                    }
                    #expect(await kvAnswers("before"))
                    first.stop()
                    let second = try await first.restart()
                    defer { second.stop() }
                    try await eventually("the trigger and the KV host service answer again", timeout: .seconds(15)) {
                        await kvAnswers("after")
                    }
                }
                #expect(try await node.terminate() == 0)
            }
        }
    }
}
