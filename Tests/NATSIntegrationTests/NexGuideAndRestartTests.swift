import Foundation
import NATS
import NATSTestSupport
import NexSandbox
import Testing

/// Acceptance scenarios 13 and 14 through the real `nex` binary alone: the getting-started guide as
/// written, and a node that keeps its identity and workloads across SIGTERM and SIGKILL.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct NexGuideAndRestartTests {
        let nex = TestEnvironment.builtProduct("nex")
        static let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path

        func run(_ args: [String], env: [String: String?] = [:]) async throws -> TestEnvironment.RunResult {
            try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
        }

        /// A running `nex node up` and the id and xkey it printed.
        struct Node {
            let process: PeerProcess
            let id: String
            let xkey: String
        }

        func nodeUp(config: String, url: String, env: [String: String?]) async throws -> Node {
            let process = try await PeerProcess.start(
                nex, ["node", "up", "-s", url, "--config", config], environment: env)
            let up = try await eventuallyValue("the node is up") { process.output.first { $0.contains(" is up") } }
            let words = up.split(separator: " ").map { $0.trimmingCharacters(in: .punctuationCharacters) }
            let id = try #require(words.first { $0.hasPrefix("N") && $0.count == 56 })
            let xkey = try #require(words.first { $0.hasPrefix("X") && $0.count == 56 })
            return Node(process: process, id: id, xkey: xkey)
        }

        /// The guide: preflight, node up, node ls, devrun of the echo service, of echofunction.js and of
        /// echofunction.wasm on a configuration with no `workload_types`, and node info listing all three;
        /// with no sandbox and in the default namespace sandbox (where the echo service is the static probe
        /// program's NATS echo, the sandbox running static executables only).
        @Test(arguments: [false, true]) func theGuideAsWritten(sandboxed: Bool) async throws {
            if sandboxed {
                try #require(
                    TestEnvironment.shouldRun(needing: NexSandboxTests.available), "bubblewrap or cgroups missing")
            }
            try await NATSServer.with(.init(jetStream: true)) { server in
                let url = server.url
                let work = server.directory.path
                let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
                let config = work + "/simple.json"
                try
                    #"{"machine_pool_size": 1, "tags": {"simple": "true"}\#(sandboxed ? "" : #", "no_sandbox": true"#)}"#
                    .write(toFile: config, atomically: true, encoding: .utf8)
                let preflight = try await run(["node", "preflight", "--check", "--config", config], env: env)
                #expect(preflight.status == 0, "\(preflight.stdout) \(preflight.stderr)")

                let node = try await nodeUp(config: config, url: url, env: env)
                let ls = try await run(["node", "ls", "-s", url])
                #expect(ls.status == 0 && ls.stdout.contains(node.id) && ls.stdout.contains("simple=true"))
                // Durations for people: whole seconds, never Go's nanosecond text.
                #expect(ls.stdout.range(of: #"\d+\.\d{3,}s"#, options: .regularExpression) == nil, "\(ls.stdout)")

                let service: [String]
                if sandboxed {
                    let echo = work + "/echoservice"
                    try FileManager.default.copyItem(atPath: try await NexSandboxTests.escapeProgram(), toPath: echo)
                    service = ["devrun", echo, "--argv", "natsecho svc.echo", "nats_url=\(url)"]
                } else {
                    service = ["devrun", TestEnvironment.builtProduct("echoservice"), "nats_url=\(url)"]
                }
                let svc = try await run(service + ["-s", url], env: env)
                #expect(svc.status == 0 && svc.stdout.contains("(echoservice) is running"), "\(svc.stderr)")
                let js = try await run(
                    ["devrun", Self.examples + "/echofunction.js", "--trigger_subject=js.echo", "-s", url], env: env)
                #expect(js.status == 0 && js.stdout.contains("(echofunctionjs) is running"), "\(js.stderr)")
                let wasm = try await run(
                    ["devrun", Self.examples + "/wasm/echofunction.wasm", "--trigger_subject=wasm.echo", "-s", url],
                    env: env)
                #expect(wasm.status == 0 && wasm.stdout.contains("(echofunctionwasm) is running"), "\(wasm.stderr)")

                try await withClient([url]) { client in
                    let echo = try await eventuallyValue("svc.echo answers") {
                        try? await client.request("test", to: "svc.echo", timeout: .seconds(1))
                    }
                    #expect(echo.string == "test")
                }
                #expect(try await run(["req", "js.echo", "heya", "-s", url]).stdout == "heya\n")
                #expect(try await run(["req", "wasm.echo", "hello", "-s", url]).stdout == "hellowasm.echo\n")

                let info = try await run(["node", "info", node.id, "-s", url])
                for name in ["echoservice", "echofunctionjs", "echofunctionwasm"] {
                    #expect(info.stdout.contains(" \(name) "), "\(info.stdout)")
                }
                #expect(info.stdout.contains("UPTIME") && !info.stdout.contains("Uptime: 0."))
                #expect(try await node.process.terminate() == 0)
                // Every task and thread the node started for its agents, workloads and sandboxes ended with it.
                #expect(
                    node.process.errorOutput.contains("none of its tasks or threads is left"),
                    "\(node.process.errorOutput)"
                )
            }
        }

        /// Scenario 14: stopped with SIGTERM, then its process group killed with SIGKILL, a node started again
        /// with the same configuration has the same id and xkey, runs its service and function again under
        /// their ids, and the issuer that deployed them can stop them. A second node on the same resource
        /// directory is refused meanwhile.
        @Test func aNodeKeepsItsIdentityAndWorkloadsAcrossRestarts() async throws {
            try await NATSServer.with(.init(jetStream: true)) { server in
                let url = server.url
                let work = server.directory.path
                let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
                let config = work + "/node.json"
                try #"{"no_sandbox": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
                var node = try await nodeUp(config: config, url: url, env: env)

                let second = try await run(["node", "up", "-s", url, "--config", config], env: env)
                #expect(second.status != 0 && second.stderr.contains("another node is running on \(work)/nexhome"))

                let svc = try await run(
                    ["devrun", TestEnvironment.builtProduct("echoservice"), "nats_url=\(url)", "-s", url], env: env)
                let js = try await run(
                    ["devrun", Self.examples + "/echofunction.js", "--trigger_subject=js.echo", "-s", url], env: env)
                let ids = try [svc, js].map { result in
                    let line = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("Workload ") })
                    return String(line.split(separator: " ")[1])
                }
                let seed = try String(contentsOfFile: work + "/nexhome/node.nk", encoding: .utf8)
                #expect(seed.hasPrefix("SN"))
                let mode = try FileManager.default.attributesOfItem(atPath: work + "/nexhome/node.nk")[
                    .posixPermissions]
                #expect(mode as? Int == 0o600)

                try await withClient([url]) { client in
                    for (index, kill) in [false, true].enumerated() {
                        let before = node
                        if kill {
                            before.process.signalGroup(SIGKILL)
                            _ = try await before.process.waitForExit()
                        } else {
                            #expect(try await before.process.terminate() == 0)
                        }
                        node = try await nodeUp(config: config, url: url, env: env)
                        #expect(node.id == before.id && node.xkey == before.xkey, "restart \(index)")
                        let restarted = ContinuousClock.now
                        let echo = try await eventuallyValue("svc.echo answers again", timeout: .seconds(10)) {
                            try? await client.request("again", to: "svc.echo", timeout: .seconds(1))
                        }
                        let function = try await eventuallyValue("js.echo answers again", timeout: .seconds(10)) {
                            try? await client.request("heya", to: "js.echo", timeout: .seconds(1))
                        }
                        #expect(echo.string == "again" && function.string == "heya")
                        #expect(ContinuousClock.now - restarted < .seconds(10))
                        let info = try await run(["node", "info", node.id, "--json", "-s", url])
                        for id in ids { #expect(info.stdout.contains(id), "restart \(index): \(info.stdout)") }
                    }
                }

                for id in ids {
                    let stopped = try await run(["stop", node.id, id, "-s", url], env: env)
                    #expect(stopped.status == 0 && stopped.stdout.contains("stopped"), "\(stopped.stderr)")
                }
                // Stopped for good: their records are gone, so a restart brings nothing back.
                let journal = work + "/nexhome/nodes/\(node.id)/workloads"
                let left = try FileManager.default.contentsOfDirectory(atPath: journal).filter { $0.hasSuffix(".json") }
                #expect(left.isEmpty, "\(left)")
                #expect(try await node.process.terminate() == 0)
            }
        }
    }
}
