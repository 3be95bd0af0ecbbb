import Foundation
import NATS
import NATSTestSupport
import NexSandbox
import Testing

/// Redeploys through the real `nex` binary against a real `nex node up`: a new copy runs before the earlier one
/// stops, and a refused or dying new copy leaves the earlier one serving.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct NexRedeployTests {
        let nex = TestEnvironment.builtProduct("nex")

        func run(_ args: [String], env: [String: String?]) async throws -> TestEnvironment.RunResult {
            try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
        }

        /// A node from `nex node up` (sandboxed or not) on a fresh server, with a developer home.
        func withNode(
            sandboxed: Bool, _ body: (_ url: String, _ work: String, _ env: [String: String?]) async throws -> Void
        ) async throws {
            try await NATSServer.with(.init(jetStream: true)) { server in
                let url = server.url
                let work = server.directory.path
                let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
                let config = work + "/node.json"
                try #"{"machine_pool_size": 2\#(sandboxed ? "" : #", "no_sandbox": true"#)}"#
                    .write(toFile: config, atomically: true, encoding: .utf8)
                let node = try await PeerProcess.start(
                    nex, ["node", "up", "-s", url, "--config", config], environment: env)
                _ = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
                try await body(url, work, env)
                #expect(try await node.terminate() == 0)
            }
        }

        /// 50 back-to-back redeploys of one function name, valid versions alternating with broken ones (a
        /// syntax error, a bad trigger subject, the wrong type). After a valid one exactly one copy runs and
        /// answers with its version; after a broken one the command fails, says the earlier copy still runs,
        /// and the previous version answers.
        @Test(arguments: [false, true]) func fiftyRedeploysNeverLeaveTheNameUnserved(sandboxed: Bool) async throws {
            if sandboxed {
                try #require(
                    TestEnvironment.shouldRun(needing: NexSandboxTests.available), "bubblewrap or cgroups missing")
            }
            try await withNode(sandboxed: sandboxed) { url, work, env in
                let file = work + "/redeploy.js"
                var version = 0
                try await withClient([url]) { client in
                    for round in 0..<50 {
                        let valid = round % 2 == 0
                        var args = ["devrun", file, "--trigger_subject", "re.deploy", "-s", url]
                        var reason = ""
                        if valid {
                            version += 1
                            try "(subject, payload) => 'v\(version)'".write(
                                toFile: file, atomically: true, encoding: .utf8)
                        } else {
                            switch round % 6 {
                            case 1:
                                try "(subject, payload) => { 'v".write(toFile: file, atomically: true, encoding: .utf8)
                                reason = "does not compile"
                            case 3:
                                args[3] = "foo..bar"
                                reason = "foo..bar"
                            default:
                                args += ["--type", "wasm"]
                                reason = "WebAssembly"
                            }
                        }
                        let result = try await run(args, env: env)
                        if valid {
                            #expect(result.status == 0, "round \(round): \(result.stderr)")
                        } else {
                            #expect(result.status != 0, "round \(round): a broken copy was reported as running")
                            #expect(result.stderr.contains(reason), "round \(round): \(result.stderr)")
                            // Refused by the node (not by the CLI's own check of the subject): it says what runs.
                            if round % 6 != 3 {
                                #expect(result.stderr.contains("still runs"), "round \(round): \(result.stderr)")
                            }
                        }
                        // Exactly one copy, answering with the last valid version.
                        let listed = try await run(["ls", "redeployjs", "--json", "-s", url], env: env)
                        let rows = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]
                        #expect(rows?.count == 1, "round \(round): \(listed.stdout) \(listed.stderr)")
                        let reply = try await client.request("x", to: "re.deploy", timeout: .seconds(10))
                        #expect(reply.string == "v\(version)", "round \(round)")
                    }
                }
            }
        }

        /// A service that dies at once: devrun fails with its exit code and its last lines, and the earlier
        /// copy keeps serving; `nex logs NAME` afterwards shows what it printed (the node kept the lines).
        @Test func aServiceThatDiesAtOnceIsReportedAndTheEarlierCopyKept() async throws {
            try await withNode(sandboxed: false) { url, work, env in
                let echo = work + "/echoservice"
                try FileManager.default.copyItem(atPath: TestEnvironment.builtProduct("echoservice"), toPath: echo)
                let good = try await run(["devrun", echo, "nats_url=\(url)", "--json", "-s", url], env: env)
                #expect(good.status == 0, "\(good.stderr)")
                let report = try JSONSerialization.jsonObject(with: Data(good.stdout.utf8)) as? [String: Any]
                let goodID = try #require(report?["id"] as? String)
                #expect(report?["status"] as? String == "running")

                // Nothing listens on port 1 of loopback: the new copy exits with code 1 at once.
                // A long settle: a loaded machine may take a while to start it, and the check is that its exit is seen.
                let bad = try await run(
                    ["devrun", echo, "nats_url=nats://127.0.0.1:1", "--settle", "20", "-s", url], env: env)
                #expect(bad.status != 0)
                #expect(bad.stderr.contains("exited with code 1"), "\(bad.stderr)")
                #expect(bad.stderr.contains("echoservice: cannot connect to nats://127.0.0.1:1"), "\(bad.stderr)")
                #expect(bad.stderr.contains("the earlier echoservice still runs: \(goodID)"), "\(bad.stderr)")
                try await withClient([url]) { client in
                    let reply = try await client.request("still", to: "svc.echo", timeout: .seconds(10))
                    #expect(reply.string == "still")
                }
                let listed = try await run(["ls", "echoservice", "--json", "-s", url], env: env)
                #expect(listed.stdout.contains(goodID) && !listed.stdout.isEmpty)

                // The kept lines: the failed copy's last words, without a `nex logs` running at the time.
                let logs = try await run(["logs", "echoservice", "--no-follow", "-s", url], env: env)
                #expect(logs.status == 0, "\(logs.stderr)")
                #expect(logs.stdout.contains("cannot connect to nats://127.0.0.1:1"), "\(logs.stdout)")
                let json = try await run(["logs", "echoservice", "--no-follow", "--json", "-s", url], env: env)
                let first = try #require(json.stdout.split(separator: "\n").first)
                let line = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]
                #expect(line?["workload_name"] as? String == "echoservice" && line?["text"] is String)

                // The failed copy's lines by a prefix of its id, though it no longer runs.
                let badID = try #require(
                    bad.stderr.firstMatch(of: /workload (\S+) \(echoservice\) exited/).map { String($0.1) })
                let byPrefix = try await run(["logs", String(badID.prefix(8)), "--no-follow", "-s", url], env: env)
                #expect(byPrefix.status == 0, "\(byPrefix.stderr)")
                #expect(byPrefix.stdout.contains("cannot connect to nats://127.0.0.1:1"), "\(byPrefix.stdout)")
                #expect(!byPrefix.stdout.contains(String(goodID.prefix(8))), "\(byPrefix.stdout)")

                // An essential copy that dies is restarted by the node: devrun fails and stops those restarts,
                // so the earlier copy is the only one left.
                let essential = try await run(
                    ["devrun", echo, "nats_url=nats://127.0.0.1:1", "--essential", "--settle", "20", "-s", url],
                    env: env)
                #expect(essential.status != 0 && essential.stderr.contains("exited with code 1"), "\(essential)")
                let left = try await run(["ls", "echoservice", "--json", "-s", url], env: env)
                let rows = try JSONSerialization.jsonObject(with: Data(left.stdout.utf8)) as? [[String: Any]]
                #expect(rows?.count == 1 && rows?.first?["id"] as? String == goodID, "\(left.stdout)")

                // With --no-wait the deploy is accepted and not waited for.
                let quick = work + "/quickdeath"
                try FileManager.default.copyItem(atPath: echo, toPath: quick)
                let accepted = try await run(
                    ["devrun", quick, "nats_url=nats://127.0.0.1:1", "--no-wait", "-s", url], env: env)
                #expect(
                    accepted.status == 0 && accepted.stdout.contains("(quickdeath) was accepted"), "\(accepted.stderr)")
            }
        }
    }
}
