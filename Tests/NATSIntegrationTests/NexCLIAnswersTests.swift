import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

@testable import NexNode

/// What a newcomer types, through the real `nex` binary: each bad input gets its real cause, a fix and a
/// non-zero exit; ids work as people type them; error answers fail `nex req`.
@Suite(.timeLimit(.minutes(3))) struct NexCLIAnswersTests {
    let nex = TestEnvironment.builtProduct("nex")
    static let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path

    func run(_ args: [String], env: [String: String?] = [:]) async throws -> TestEnvironment.RunResult {
        try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
    }

    /// A configuration file with `text`, parsed by `nex node up` (it fails before it connects).
    func configError(_ text: String) async throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-answers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("node.json").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try await run(["node", "up", "--config", file, "-s", "nats://127.0.0.1:1"])
        #expect(result.status != 0, "\(text) was accepted")
        return result.stderr
    }

    @Test func theConfigurationIsStrictAndSaysWhere() async throws {
        let comma = try await configError("{\n  \"machine_pool_size\": 2,\n}\n")
        #expect(comma.contains("line 2, column 25: a trailing comma"), "\(comma)")
        let fraction = try await configError(#"{"machine_pool_size": 2.5}"#)
        #expect(fraction.contains("machine_pool_size should be a whole number"), "\(fraction)")
        let word = try await configError(#"{"no_sandbox": "yes"}"#)
        #expect(word.contains("no_sandbox should be true or false"), "\(word)")
        let list = try await configError(#"{"tags": ["a"]}"#)
        #expect(list.contains("tags should be an object"), "\(list)")
        let twice = try await configError(#"{"no_sandbox": true, "no_sandbox": false}"#)
        #expect(twice.contains("the key no_sandbox appears twice"), "\(twice)")
        for text in [#"{"a": 1}"#, #"{"machine_pool_size": 2.5}"#] {
            #expect(!(try await configError(text)).contains("Dictionary<"), "Swift type names leak")
        }
    }

    @Test func flagsAreCheckedAndTyposGetSuggestions() async throws {
        let url = "nats://127.0.0.1:1"
        let cases: [(args: [String], says: String)] = [
            (["node", "ls", "--log-level", "verbose", "-s", url], "--log-level takes trace, debug, info"),
            (["ui", "--port", "99999", "-s", url], "--port takes 0 to 65535, got 99999"),
            (["node", "up", "--no-sandbox", "--sandbox", "vm", "-s", url], "contradict each other"),
            (["node", "up", "--sandbox", "jail", "-s", url], "--sandbox takes auto, namespace, vm or firecracker"),
            (["nod", "ls"], "nex has no command nod (did you mean `nex node`?)"),
            (["node", "lss"], "nex node has no command lss (did you mean `nex node ls`?)"),
            (["events", "--type", "workload_deploy", "-s", url], "did you mean workload_deployed?"),
            (["ls", "--namespace", "a b", "-s", url], "is not a namespace name"),
            (["devrun", "x.js", "--type", "python", "-s", url], "use one of native, v8, wasm"),
            (["devrun", "x.js", "--max_concurrency", "0", "-s", url], "--max_concurrency takes 1 to 1024"),
            (["devrun", "x.js", "--settle=-1", "-s", url], "--settle takes 0 to 600 seconds"),
            (["stop", "-s", url], "give the workload"),
            (["devrun", "x.js", "--cron", "*/5 * * * *", "-s", url], "--cron takes six fields, seconds first"),
            (["devrun", "x.js", "--cron", "@hourly", "--every", "1s", "-s", url], "--cron and --every contradict"),
            (["devrun", "x.js", "--max-deliver", "3", "-s", url], "go with --stream, --kv-watch"),
            (["devrun", "x.js", "--filter", "a.>", "-s", url], "--filter goes with --stream"),
        ]
        for (args, says) in cases {
            let result = try await run(args)
            #expect(result.status != 0, "\(args) exited 0")
            #expect(result.stderr.contains(says), "\(args): \(result.stderr)")
        }
    }

    /// With no node, every command that needs one says so and exits 1; with the only node in lame duck,
    /// devrun says that; ids by prefix and name; an error answer fails `nex req`.
    @Test func answersNameTheRealCause() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let url = server.url
            let env: [String: String?] = ["NEX_HOME": server.directory.appendingPathComponent("nexhome").path]
            let function = Self.examples + "/echofunction.js"
            for args in [["ls"], ["node", "ls"], ["devrun", function]] {
                let none = try await run(args + ["-s", url], env: env)
                #expect(none.status == 1 && none.stderr.contains("no Nex node answered"), "\(args): \(none.stderr)")
            }

            let node = try await PeerProcess.start(nex, ["node", "up", "-s", url, "--no-sandbox"], environment: env)
            let up = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            let nodeID = try #require(up.split(separator: " ").first { $0.hasPrefix("N") && $0.count == 56 })
            let file = server.directory.appendingPathComponent("thrower.js").path
            try
                "(subject, payload) => { if (new TextDecoder().decode(payload) === 'boom') throw new Error('it broke'); return payload }"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let deployed = try await run(["devrun", file, "--trigger_subject", "t.x", "--json", "-s", url], env: env)
            #expect(deployed.status == 0, "\(deployed.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(deployed.stdout.utf8)) as? [String: Any]
            let id = try #require(report?["id"] as? String)

            // nex req: an answer is stdout and exit 0; an error answer is exit 1 with the error on stderr.
            let fine = try await run(["req", "t.x", "fine", "-s", url])
            #expect(fine.status == 0 && fine.stdout == "fine\n")
            let boom = try await run(["req", "t.x", "boom", "-s", url])
            #expect(boom.status == 1 && boom.stderr.contains("t.x answered with an error"), "\(boom)")
            #expect(boom.stderr.contains("it broke"), "\(boom)")
            // The stack names the user's file, not a made-up one.
            #expect((boom.stdout + boom.stderr).contains("thrower.js:1"), "\(boom)")
            let nobody = try await run(["req", "nobody.here", "-s", url])
            #expect(nobody.status == 1 && nobody.stderr.contains("no responders on nobody.here"))

            // Listings: one look, human units; a name that matches nothing says what does run.
            let ls = try await run(["ls", "-s", url])
            for column in ["NAMESPACE", "NAME", "TYPE", "WORKLOAD ID", "NODE ID", "UPTIME", "HEALTH"] {
                #expect(ls.stdout.contains(column), "\(ls.stdout)")
            }
            #expect(ls.stdout.contains("throwerjs"))
            let listed = try await run(["ls", "--json", "-s", url])
            let rows = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]
            #expect(rows?.count == 1 && rows?.first?["healthy"] as? Bool == true, "\(listed.stdout)")
            #expect((rows?.first?["uptime"] as? String)?.isEmpty == false)
            let nosuch = try await run(["ls", "nosuch", "-s", url])
            #expect(
                nosuch.status == 1 && nosuch.stderr.contains("no workload named nosuch")
                    && nosuch.stderr.contains("1 others run"))
            let info = try await run(["node", "info", String(nodeID.prefix(8)), "-s", url])
            #expect(
                info.status == 0 && info.stdout.contains("Memory:") && info.stdout.contains("iB total"),
                "\(info.stdout)")
            #expect(!info.stdout.contains("kB"))
            let wrongNode = try await run(["node", "info", "NZZZ", "-s", url])
            #expect(wrongNode.status == 1 && wrongNode.stderr.contains("`nex node ls` lists them"))

            // Another issuer's devrun of the same name leaves this issuer's copy alone, and says why it cannot run
            // beside it (the node takes no duplicate).
            let other: [String: String?] = ["NEX_HOME": server.directory.appendingPathComponent("otherhome").path]
            let rival = try await run(["devrun", file, "--trigger_subject", "t.x", "-s", url], env: other)
            #expect(rival.status == 1, "\(rival)")
            #expect(
                rival.stderr.contains("another issuer's throwerjs runs on node \(nodeID) (\(id))"), "\(rival.stderr)")
            #expect(rival.stderr.contains("is already running"), "\(rival.stderr)")
            // Said once: the refusal is not taken for a copy that a restarting node is bringing back.
            #expect(rival.stderr.components(separatedBy: "another issuer's").count == 2, "\(rival.stderr)")
            #expect(try await run(["req", "t.x", "still", "-s", url]).stdout == "still\n")

            // A prefix that several ids share lists them, for stop and for logs. Ids are random: functions are
            // deployed until two ids share their first character (17 ids always do).
            var ids = [id]
            var pair: [String] = []
            for n in 1...16 where pair.isEmpty {
                let extra = server.directory.appendingPathComponent("p\(n).js").path
                try "(subject, payload) => payload".write(toFile: extra, atomically: true, encoding: .utf8)
                let more = try await run(
                    ["devrun", extra, "--trigger_subject", "p.\(n)", "--json", "-s", url], env: env)
                try #require(more.status == 0, "\(more.stderr)")
                let moreReport = try JSONSerialization.jsonObject(with: Data(more.stdout.utf8)) as? [String: Any]
                let moreID = try #require(moreReport?["id"] as? String, "\(more.stderr)")
                if let match = ids.first(where: { $0.first == moreID.first }) { pair = [match, moreID] }
                ids.append(moreID)
            }
            try #require(pair.count == 2, "\(ids)")
            let letter = String(pair[0].prefix(1))
            let ambiguous = try await run(["stop", letter, "-s", url], env: env)
            #expect(ambiguous.status == 1, "\(ambiguous)")
            #expect(ambiguous.stderr.contains("give more of the id"), "\(ambiguous.stderr)")
            #expect(pair.allSatisfy { ambiguous.stderr.contains($0) }, "\(ambiguous.stderr)")

            // Logs by id prefix reach workloads that no longer run, through the lines the node kept: two such
            // workloads' lines are published as a node would, and kept by NEX_LOGS.
            try await withClient([url]) { client in
                for (id, text) in [("gone0001-one", "first ghost line"), ("gone0001-two", "second ghost line")] {
                    let entry = #"{"id":"\#(id)","level":0,"text":"\#(text)"}"#
                    _ = try await JetStreamContext(client: client).publish(
                        Array(entry.utf8), to: "$NEX.logs.default.\(nodeID).ghost.\(id)")
                }
            }
            let ghosts = try await run(["logs", "gone0001", "--no-follow", "-s", url], env: env)
            #expect(ghosts.status == 1 && ghosts.stderr.contains("give more of the id"), "\(ghosts)")
            #expect(ghosts.stderr.contains("gone0001-one (ghost)") && ghosts.stderr.contains("gone0001-two (ghost)"))
            let ghost = try await run(["logs", "gone0001-t", "--no-follow", "-s", url], env: env)
            #expect(ghost.status == 0 && ghost.stdout.contains("second ghost line"), "\(ghost)")
            #expect(!ghost.stdout.contains("first ghost line"), "\(ghost.stdout)")

            // Stop by name and by id prefix.
            let unknown = try await run(["stop", "nosuchname", "-s", url], env: env)
            #expect(unknown.status == 1 && unknown.stderr.contains("`nex ls` lists them"))
            let stopped = try await run(["stop", "throwerjs", "--json", "-s", url], env: env)
            #expect(stopped.status == 0 && stopped.stdout.contains(#""stopped":true"#) && stopped.stdout.contains(id))
            let again = try await run(["devrun", file, "--trigger_subject", "t.x", "-s", url], env: env)
            let againID = try #require(again.stdout.split(separator: " ").dropFirst().first.map(String.init))
            let byPrefix = try await run(["stop", String(againID.prefix(6)), "-s", url], env: env)
            #expect(
                byPrefix.status == 0 && byPrefix.stdout.contains("Workload \(againID) stopped"), "\(byPrefix.stderr)")

            // The only node in lame duck: devrun says so, not "no node can run v8".
            #expect(try await run(["lameduck", String(nodeID.prefix(10)), "-s", url]).status == 0)
            let lameDuck = try await run(["devrun", function, "-s", url], env: env)
            #expect(lameDuck.status == 1 && lameDuck.stderr.contains("is in lame duck mode"), "\(lameDuck.stderr)")
            _ = try await node.terminate()
        }
    }

    /// A node with room for one workload: a redeploy stops the earlier copy first and says so; a function over
    /// its CPU limit fails `nex req`; `nex events --json` prints one CloudEvent per line.
    @Test func aFullNodeStillTakesARedeployAndLimitsFailTheRequest() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let url = server.url
            let work = server.directory.path
            let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
            let config = work + "/node.json"
            try #"{"no_sandbox": true, "node_limits": {"max_workloads": 1}, "function_limits": {"cpu_ms": 200}}"#
                .write(toFile: config, atomically: true, encoding: .utf8)
            let node = try await PeerProcess.start(
                nex, ["node", "up", "-s", url, "--config", config], environment: env)
            _ = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            let file = work + "/spin.js"
            try "(subject, payload) => { if (payload.length > 0) { while (true) {} } return 'v1' }"
                .write(toFile: file, atomically: true, encoding: .utf8)
            let first = try await run(["devrun", file, "--trigger_subject", "spin.x", "-s", url], env: env)
            #expect(first.status == 0, "\(first.stderr)")

            let spin = try await run(["req", "spin.x", "forever", "-s", url])
            #expect(spin.status == 1 && spin.stderr.contains("CPU limit (200 ms)"), "\(spin)")

            let events = try await PeerProcess.start(nex, ["events", "--json", "-s", url])
            try await events.waitForErrorOutput(containing: "Following events")
            try "(subject, payload) => 'v2'".write(toFile: file, atomically: true, encoding: .utf8)
            let second = try await run(["devrun", file, "--trigger_subject", "spin.x", "-s", url], env: env)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(second.stderr.contains("has no room for a second spinjs (node_limits.max_workloads)"))
            #expect(second.stdout.contains("Replaced the earlier spinjs"), "\(second.stdout)")
            let reply = try await run(["req", "spin.x", "", "-s", url])
            #expect(reply.status == 0 && reply.stdout == "v2\n", "\(reply)")

            let deployed = try await eventuallyValue("a workload_deployed event as one JSON line") {
                events.output.first { $0.contains(#""type":"workload_deployed""#) }
            }
            let event = try JSONSerialization.jsonObject(with: Data(deployed.utf8)) as? [String: Any]
            #expect((event?["data"] as? [String: Any])?["workload_name"] as? String == "spinjs")
            _ = try await events.terminate()
            #expect(try await node.terminate() == 0)
        }
    }

    /// `devrun --stream`: the function handles the stream's messages through the consumer its copies share, and
    /// the deploy's refusal names a stream that does not exist.
    @Test func devrunTakesAStreamTrigger() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let url = server.url
            let env: [String: String?] = ["NEX_HOME": server.directory.appendingPathComponent("nexhome").path]
            let node = try await PeerProcess.start(nex, ["node", "up", "-s", url, "--no-sandbox"], environment: env)
            _ = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            let file = server.directory.appendingPathComponent("worker.js").path
            try "(subject, payload) => payload".write(toFile: file, atomically: true, encoding: .utf8)

            let missing = try await run(["devrun", file, "--stream", "JOBS", "-s", url], env: env)
            #expect(missing.status == 1 && missing.stderr.contains("the stream JOBS does not exist"), "\(missing)")

            try await withClient([url]) { client in
                let js = JetStreamContext(client: client)
                _ = try await js.createStream(StreamConfig(name: "JOBS", subjects: ["jobs.>"]))
                let deployed = try await run(
                    [
                        "devrun", file, "--stream", "JOBS", "--filter", "jobs.new", "--max-deliver", "3", "--backoff",
                        "1s,2s", "--dead-letter", "jobs.dead", "-s", url,
                    ], env: env)
                #expect(deployed.status == 0, "\(deployed.stderr)")
                for i in 0..<3 { _ = try await js.publish(Array("job \(i)".utf8), to: "jobs.new") }
                let durable = try #require(try await js.consumerNames(stream: "JOBS").first)
                #expect(durable == JetStreamTriggerPlan.durableName(namespace: "default", name: "workerjs", index: 0))
                try await eventually("the three jobs acknowledged", timeout: .seconds(20)) {
                    let info = try await js.consumerInfo(stream: "JOBS", name: durable)
                    return info.ackFloor.streamSequence == 3 && info.pendingAcks == 0
                }
                let info = try await js.consumerInfo(stream: "JOBS", name: durable)
                #expect(info.config.maxDeliver == 3 && info.config.filterSubject == "jobs.new")
            }
            #expect(try await node.terminate() == 0)
        }
    }
}
