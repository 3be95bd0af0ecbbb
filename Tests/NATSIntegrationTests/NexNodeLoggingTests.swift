import Foundation
import NATS
import NATSTestSupport
import Testing

/// Issue 13, node logs as Nex ships them: `nex node up --logger file --logger nats --logjson` writes
/// `nex.log` and `nex.err` in its working directory and publishes to `$NEX.logs.system.<node>.stdout|stderr`.
@Suite(.timeLimit(.minutes(2))) struct NexNodeLoggingTests {
    let nex = TestEnvironment.builtProduct("nex")

    /// A log line's JSON fields (every value is a string here).
    static func fields(_ line: some StringProtocol) -> [String: String]? {
        (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: String]
    }

    @Test func fileAndNATSLoggersWriteJSONLinesSplitByLevel() async throws {
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            let shipped = try await MessageRecorder(client, subject: "$NEX.logs.system.>")
            let directory = server.directory.appendingPathComponent("cwd").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // An agent that is not there: the node logs an error at start (and still answers).
            let config = directory + "/node.json"
            try #"{"no_sandbox": true, "agent_path": "/nonexistent/nex-agent"}"#.write(
                toFile: config, atomically: true, encoding: .utf8)
            let node = try await PeerProcess.start(
                nex,
                [
                    "node", "up", "-s", server.url, "--config", config, "--logger", "file", "--logger", "nats",
                    "--logjson",
                ],
                environment: ["NEX_HOME": directory + "/home"], directory: directory)
            let up = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            let nodeID = try #require(
                up.split(separator: " ").map(String.init).first { $0.hasPrefix("N") && $0.count == 56 })

            func shippedLine(_ stream: String, _ message: String) -> [String: String]? {
                shipped.messages.lazy.filter { $0.subject == "$NEX.logs.system.\(nodeID).\(stream)" }
                    .compactMap { Self.fields(String(decoding: $0.payload, as: UTF8.self)) }
                    .first { $0["msg"] == message }
            }
            let started = try await eventuallyValue("node started on ….stdout") {
                shippedLine("stdout", "node started")
            }
            #expect(started["level"] == "info" && started["nex.node"] == nodeID && started["logger"] == "nex.node")
            let problem = try await eventuallyValue("the agent problem on ….stderr") {
                shippedLine("stderr", "this node cannot run workloads")
            }
            #expect(problem["level"] == "error" && problem["reason"]?.contains("nex-agent not found") == true)
            #expect(shippedLine("stderr", "node started") == nil)

            #expect(try await node.terminate() == 0)
            let log = try String(contentsOfFile: directory + "/nex.log", encoding: .utf8)
            let errors = try String(contentsOfFile: directory + "/nex.err", encoding: .utf8)
            let logLines = log.split(separator: "\n").map { Self.fields($0) }
            #expect(!logLines.isEmpty && logLines.allSatisfy { $0 != nil }, "every line is JSON: \(log)")
            #expect(logLines.contains { $0?["msg"] == "node started" })
            #expect(!log.contains("this node cannot run workloads"))
            #expect(
                errors.split(separator: "\n").contains { Self.fields($0)?["msg"] == "this node cannot run workloads" })
            #expect(!errors.contains("node started"))
        }
    }

    @Test func anUnknownLoggerIsRefused() async throws {
        let result = try await TestEnvironment.runAllowingFailure(
            nex, ["node", "up", "--logger", "syslog", "-s", "nats://127.0.0.1:1"])
        #expect(result.status != 0 && result.stderr.contains("--logger takes std, file or nats, got syslog"))
    }
}
