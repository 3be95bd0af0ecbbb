import Foundation
import NATS
import NATSTestSupport
import NKeys
import NexSandbox
import Testing

@Suite(.timeLimit(.minutes(2))) struct NexCLITests {
    let nex = TestEnvironment.builtProduct("nex")

    func run(_ args: [String], env: [String: String?] = [:]) async throws -> TestEnvironment.RunResult {
        try await TestEnvironment.runAllowingFailure(nex, args, environment: env)
    }

    @Test func versionAndHelp() async throws {
        #expect(try await run(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try await run(["--help"]).stdout
        #expect(help.contains("node") && help.contains("lameduck"))
    }

    @Test func nodeUpListInfoLameDuck() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let node = try await PeerProcess.start(
                nex, ["node", "up", "-s", server.url, "--no-sandbox", "--tags", "zone=eu"])
            let lines = try await node.waitForLines(2)
            let up = try #require(lines.first { $0.contains("is up") })
            let nodeID = try #require(
                up.split(separator: " ").first { $0.hasPrefix("N") && $0.count == 56 }.map(String.init))

            let table = try await run(["node", "ls", "-s", server.url])
            #expect(table.status == 0 && table.stdout.contains("NODE ID") && table.stdout.contains(nodeID))
            #expect(table.stdout.contains("zone=eu") && table.stdout.contains("nex.unsafe=true"))
            let json = try await run(["node", "ls", "--json", "-s", server.url])
            let nodes = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]]
            #expect(nodes?.first?["node_id"] as? String == nodeID)

            let info = try await run(["node", "info", nodeID, "--json", "-s", server.url])
            let infoJSON = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any]
            #expect((infoJSON?["public_xkey"] as? String)?.hasPrefix("X") == true)
            #expect(try await run(["node", "info", nodeID, "-s", server.url]).stdout.contains("Warm agents:"))

            let lameduck = try await run(["lameduck", nodeID, "-s", server.url])
            #expect(lameduck.status == 0 && lameduck.stdout.contains("lame duck mode"))
            #expect(try await run(["node", "ls", "-s", server.url]).stdout.contains("nex.lameduck=true"))

            let missing = try await run(["node", "info", "NNOSUCHNODE", "--timeout", "1", "-s", server.url])
            #expect(missing.status != 0 && missing.stderr.contains("no node id matches NNOSUCHNODE"))
            #expect(try await node.terminate() == 0)
        }
    }

    /// Acceptance scenarios 3 and 9 through the real `nex` binary: a node with real agents, the example echo
    /// service deployed with devrun and answering, run/stop with key files, who may stop, logs and events.
    @Test func devrunRunStopLogsEventsProbe() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let url = server.url
            let home = server.directory.appendingPathComponent("nexhome").path
            let env = ["NEX_HOME": home]
            let node = try await PeerProcess.start(nex, ["node", "up", "-s", url, "--no-sandbox"], environment: env)
            let up = try #require(try await node.waitForLines(2).first { $0.contains("is up") })
            let nodeID = try #require(
                up.split(separator: " ").first { $0.hasPrefix("N") && $0.count == 56 }.map(String.init))
            let echo = TestEnvironment.builtProduct("echoservice")

            let events = try await PeerProcess.start(nex, ["events", "--all-namespaces", "-s", url])
            try await events.waitForErrorOutput(containing: "Following events")
            let logs = try await PeerProcess.start(nex, ["logs", "-s", url])
            try await logs.waitForErrorOutput(containing: "Following logs")

            // devrun: keys made, artifact uploaded, auction, seal, sign, deploy; the service answers.
            let first = try await run(["devrun", echo, "nats_url=\(url)", "-s", url], env: env)
            #expect(first.status == 0, "\(first.stderr)")
            // Notices go to stderr: stdout is the answer.
            #expect(
                first.stderr.contains("Created \(home)/issuer.nk")
                    && first.stderr.contains("Created \(home)/publisher.xk"))
            #expect(first.stdout.contains("is running on node \(nodeID)"), "\(first.stdout)")
            let accepted = try #require(first.stdout.split(separator: "\n").first { $0.hasPrefix("Workload ") })
            var workloadID = String(accepted.split(separator: " ")[1])
            try await withClient([url]) { client in
                let reply = try await eventuallyValue("svc.echo answers") {
                    try? await client.request("test", to: "svc.echo", timeout: .seconds(1))
                }
                #expect(reply.string == "test")
            }
            try await eventually("the deploy event, as a readable line") {
                events.output.contains {
                    $0.contains("  default  workload_deployed  echoservice (\(workloadID.prefix(8)))")
                }
            }
            try await eventually("the service's own output in nex logs") {
                logs.output.contains {
                    $0.contains("[echoservice \(workloadID.prefix(8)) info] echoservice: answering")
                }
            }
            let probe = try await run(["node", "probe", "-s", url])
            #expect(probe.stdout.contains("echoservice") && probe.stderr.contains("deprecated: use nex ls"))

            // The node's refusals, verbatim.
            let again = try await run(["devrun", echo, "--no-stop", "-s", url], env: env)
            #expect(again.stderr.contains("Reusing \(home)/issuer.nk") && !again.stdout.contains("Reusing"))
            #expect(again.status != 0 && again.stderr.contains("already running"))
            #expect(again.stderr.contains("allow_duplicate_workloads"))
            // devrun --stop (the default) replaces the earlier workload of this name, on its node.
            let replaced = try await run(["devrun", echo, "nats_url=\(url)", "-s", url], env: env)
            #expect(replaced.status == 0, "\(replaced.stderr)")
            #expect(replaced.stdout.contains("Replaced the earlier echoservice (\(workloadID))"), "\(replaced.stdout)")
            let replacement = try #require(replaced.stdout.split(separator: "\n").first { $0.hasPrefix("Workload ") })
            let earlierID = workloadID
            workloadID = String(replacement.split(separator: " ")[1])
            #expect(workloadID != earlierID)
            try await eventually("the earlier one undeployed") {
                events.output.contains { $0.contains("workload_undeployed") && $0.contains(earlierID.prefix(8)) }
            }
            let denied = try await run(["devrun", echo, "--trigger_subject", "$SYS.>", "-s", url], env: env)
            #expect(denied.status != 0 && denied.stderr.contains("not allowed"))
            let wrongType = try await run(["devrun", echo, "--type", "python", "-s", url], env: env)
            #expect(
                wrongType.status != 0
                    && wrongType.stderr.contains("--type python is not a workload type: use one of native, v8, wasm"))

            // Who may stop: another issuer is refused, another namespace has no such workload, the issuer stops.
            let strangerKey = server.directory.appendingPathComponent("stranger.nk").path
            try NKeyPair.generate(.account).seed!.write(toFile: strangerKey, atomically: true, encoding: .utf8)
            let stranger = try await run(["stop", nodeID, workloadID, "--issuer", strangerKey, "-s", url], env: env)
            #expect(stranger.status != 0 && stranger.stderr.contains("only the issuer"), "\(stranger.stderr)")
            let elsewhere = try await run(["stop", nodeID, workloadID, "--namespace", "other", "-s", url], env: env)
            #expect(elsewhere.status != 0 && elsewhere.stderr.contains("no such workload"))
            let stopped = try await run(["stop", nodeID, workloadID, "-s", url], env: env)
            #expect(stopped.status == 0 && stopped.stdout.contains("stopped"), "\(stopped.stderr)")
            try await eventually("workload_undeployed") {
                events.output.contains { $0.contains("workload_undeployed") && $0.contains(workloadID.prefix(8)) }
            }

            // run: the artifact devrun uploaded, with explicit key files, under another name.
            let runArgs = [
                "run", "nats://NEXCLIFILES/echoservice", nodeID, "nats_url=\(url)", "--xkey", home + "/publisher.xk",
                "--issuer", home + "/issuer.nk", "--name", "echo2", "-s", url,
            ]
            let ran = try await run(runArgs)
            #expect(ran.status == 0 && ran.stdout.contains("echo2"), "\(ran.stderr)")
            try await withClient([url]) { client in
                let reply = try await eventuallyValue("svc.echo answers again") {
                    try? await client.request("again", to: "svc.echo", timeout: .seconds(1))
                }
                #expect(reply.string == "again")
            }
            // run again: the new copy replaces the one running on that node, and one copy is left.
            let ranID = try #require(ran.stdout.split(separator: " ").dropFirst().first.map(String.init))
            let rerun = try await run(runArgs + ["--json"])
            #expect(rerun.status == 0, "\(rerun.stderr)")
            let rerunReport = try JSONSerialization.jsonObject(with: Data(rerun.stdout.utf8)) as? [String: Any]
            #expect(rerunReport?["replaced"] as? [String] == [ranID], "\(rerun.stdout)")
            let copies = try await run(["ls", "echo2", "--json", "-s", url])
            let rows = try JSONSerialization.jsonObject(with: Data(copies.stdout.utf8)) as? [[String: Any]]
            #expect(rows?.count == 1 && rows?.first?["id"] as? String == rerunReport?["id"] as? String)
            #expect(
                try await run(["run", "http://x/y", nodeID, "--xkey", "a", "--issuer", "b", "--name", "n", "-s", url])
                    .stderr.contains("nats://BUCKET/key"))
            var missing = runArgs
            missing[1] = "nats://NEXCLIFILES/none"
            #expect(try await run(missing).stderr.contains("no object none"))

            _ = try await run(["lameduck", nodeID, "-s", url])
            try await eventually("lame duck event") {
                events.output.contains { $0.contains("  system  node_entered_lameduck  node \(nodeID)") }
            }
            _ = try await logs.terminate()
            _ = try await events.terminate()
            #expect(try await node.terminate() == 0)
            // A graceful stop takes its workloads and agents with it.
            #expect(events.output.count >= 3)
        }
    }

    /// A node killed with SIGKILL cannot clean up: its agents must still go.
    @Test func aKilledNodeTakesItsChildrenWithIt() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            let home = server.directory.appendingPathComponent("nexhome").path
            let node = try await PeerProcess.start(
                nex, ["node", "up", "-s", server.url, "--no-sandbox"], environment: ["NEX_HOME": home])
            _ = try await node.waitForLines(2)
            func children(of pid: Int32) -> [Int32] {
                let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
                return tasks.flatMap { task in
                    ((try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? "")
                        .split(separator: " ").compactMap { Int32($0) }
                }
            }
            func alive(_ pid: Int32) -> Bool {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
                return !stat.contains(") Z ")  // a zombie has ended
            }
            let kids = try await eventuallyValue("a warm agent") {
                let pids = children(of: node.pid)
                return pids.isEmpty ? nil : pids
            }
            node.signal(SIGKILL)
            _ = try await node.waitForExit()
            try await eventually("children gone") { kids.allSatisfy { !alive($0) } }
        }
    }

    @Test func preflightChecksAndWritesStarterConfigs() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-pre-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let env = ["NEX_HOME": dir + "/home"]
        let unsafe = dir + "/unsafe.json"
        let wrote = try await run(["node", "preflight", "--init", "nosandbox", "--config", unsafe], env: env)
        #expect(wrote.status == 0 && FileManager.default.fileExists(atPath: unsafe))
        #expect(
            try await run(["node", "preflight", "--init", "nosandbox", "--config", unsafe], env: env).stderr.contains(
                "exists"))
        let ok = try await run(["node", "preflight", "--check", "--config", unsafe], env: env)
        #expect(ok.status == 0 && ok.stdout.contains("✅ sandbox: no_sandbox is set") && ok.stdout.contains("ready"))

        // A sandboxed node needs bubblewrap: the answer follows whether it is installed.
        let sandboxed = dir + "/sandboxed.json"
        _ = try await run(["node", "preflight", "--init", "sandbox", "--config", sandboxed], env: env)
        let check = try await run(["node", "preflight", "--check", "--config", sandboxed], env: env)
        let hasBwrap = FileManager.default.isExecutableFile(atPath: "/usr/bin/bwrap")
        #expect(check.stdout.contains(hasBwrap ? "✅ bubblewrap" : "❌ bubblewrap"))
        #expect((check.status == 0) == hasBwrap)

        let v8 = dir + "/v8.json"
        try #"{"no_sandbox": true, "workload_types": ["native", "v8"]}"#.write(
            toFile: v8, atomically: true, encoding: .utf8)
        let v8check = try await run(["node", "preflight", "--check", "--config", v8], env: env)
        #expect(v8check.status == 0 && v8check.stdout.contains("✅ v8 workloads: V8 from"), "\(v8check.stdout)")
        // The vm driver: QEMU and the kernel here, the root filesystem built into the node's home, a test boot.
        if MicroVM.findQEMU() != nil || TestEnvironment.isCI {
            let kernel = try await MicroVM.prepareKernel(
                in: TestEnvironment.packageRoot.appendingPathComponent(".build/vm-kernel").path)
            let vm = dir + "/vm.json"
            try #"{"sandbox": "vm", "kernel_filepath": "\#(kernel.kernel)"}"#.write(
                toFile: vm, atomically: true, encoding: .utf8)
            let vmCheck = try await run(["node", "preflight", "--check", "--config", vm], env: env)
            #expect(vmCheck.status == 0, "\(vmCheck.stdout) \(vmCheck.stderr)")
            #expect(vmCheck.stdout.contains("✅ VM kernel and root filesystem"))
            #expect(vmCheck.stdout.contains("✅ test boot"))
            #expect(FileManager.default.fileExists(atPath: dir + "/home/vm/rootfs.ext4"))
        }
        let fc = dir + "/fc.json"
        try #"{"sandbox": "firecracker"}"#.write(toFile: fc, atomically: true, encoding: .utf8)
        let fcCheck = try await run(["node", "preflight", "--check", "--config", fc], env: env)
        let hasFirecracker = FileManager.default.isExecutableFile(atPath: "/usr/bin/firecracker")
        #expect(
            hasFirecracker || (fcCheck.status != 0 && fcCheck.stdout.contains("❌ firecracker sandbox: no firecracker")))
    }

    /// The client as an ordinary user: an option only root may set (SO_DEBUG, once set by mistake for Nagle)
    /// made every connection fail with "Permission denied" outside root and inside sandboxes.
    @Test func anUnprivilegedUserConnects() async throws {
        try await NATSServer.with { server in
            // As root, drop to nobody; as anyone else, this user already is unprivileged.
            let command = ["node", "ls", "--timeout", "1", "-s", server.url]
            let ls =
                getuid() == 0
                ? try await TestEnvironment.runAllowingFailure(
                    "/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", nex] + command)
                : try await run(command)
            #expect(
                ls.stderr.contains("no Nex node answered") && !ls.stderr.contains("Permission denied"), "\(ls.stderr)")
        }
    }

    /// `nex rootfs`: an ext4 image with the agent, its libraries, busybox and /init, checked with e2fsprogs.
    @Test func rootfsBuildsABootableLayout() async throws {
        let available =
            FileManager.default.isExecutableFile(atPath: "/bin/busybox")
            && FileManager.default.isExecutableFile(atPath: "/usr/sbin/debugfs")
        try #require(TestEnvironment.shouldRun(needing: available), "busybox-static or e2fsprogs missing")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-rootfs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let setup = dir + "/setup.sh"
        try "#!/bin/busybox sh\necho setting up\n".write(toFile: setup, atomically: true, encoding: .utf8)
        let image = dir + "/rootfs.ext4"
        let built = try await run(["rootfs", "--script", setup, "-o", image])
        #expect(built.status == 0 && built.stdout.contains("Wrote \(image)"), "\(built.stderr)")
        let check = try await TestEnvironment.runAllowingFailure("/usr/sbin/e2fsck", ["-fn", image])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        func debugfs(_ request: String) async throws -> String {
            try await TestEnvironment.runAllowingFailure("/usr/sbin/debugfs", ["-R", request, image]).stdout
        }
        #expect(try await debugfs("ls -p /nex").contains("/nex-agent/"))
        #expect(try await debugfs("ls -p /nex").contains("/setup.sh/"))
        #expect(try await debugfs("stat /init").contains("Mode:  0755"))
        #expect(try await debugfs("cat /init").contains("/nex/nex-agent"))
        #expect(try await debugfs("ls -p /nex/lib").contains("/libnode.so.108/"))
        #expect(try await debugfs("cat /init").contains("LD_LIBRARY_PATH=/nex/lib /nex/nex-agent"))

        let missing = try await run(["rootfs", "--agent", dir + "/nothing", "-o", dir + "/x.ext4"])
        #expect(missing.status != 0 && missing.stderr.contains("no nex-agent"))
    }

    @Test func errorsAreOneLineAndNonZero() async throws {
        let unreachable = try await run(["node", "ls", "-s", "nats://127.0.0.1:1"])
        #expect(unreachable.status != 0 && unreachable.stderr.contains("Connection refused"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nex-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("node.json").path
        try #"{"machine_pool_sise": 2}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try await run(["node", "up", "--config", config, "-s", "nats://127.0.0.1:1"])
        #expect(bad.status != 0 && bad.stderr.contains("unknown configuration key \"machine_pool_sise\""))
        let usage = try await run(["node", "up", "--tags", "novalue", "-s", "nats://127.0.0.1:1"])
        #expect(usage.status != 0 && usage.stderr.contains("k=v"))
    }

    /// The `nats` CLI's contexts give every command its server and credentials: `--context`, then
    /// `NATS_CONTEXT`, then the selected context; flags and `NATS_URL` still win over a context.
    @Test func natsContextsGiveTheServerAndCredentials() async throws {
        try await NATSServer.with(.init(config: #"authorization { token: "context-token-1" }"#)) { server in
            let config = server.directory.appendingPathComponent("xdg").path
            let contexts = config + "/nats/context"
            try FileManager.default.createDirectory(atPath: contexts, withIntermediateDirectories: true)
            for (name, token) in [("good", "context-token-1"), ("wrong", "not-the-token")] {
                try #"{"url": "\#(server.url)", "token": "\#(token)", "description": "", "color_scheme": ""}"#
                    .write(toFile: "\(contexts)/\(name).json", atomically: true, encoding: .utf8)
            }
            try #"{"nsc": "nsc://operator/account/user"}"#.write(
                toFile: contexts + "/viansc.json", atomically: true, encoding: .utf8)
            let base: [String: String?] = ["XDG_CONFIG_HOME": config, "NATS_URL": nil, "NATS_CONTEXT": nil]
            func ls(_ args: [String] = [], _ env: [String: String?] = [:]) async throws -> TestEnvironment.RunResult {
                try await run(["node", "ls", "--json", "--timeout", "1"] + args, env: base.merging(env) { $1 })
            }
            func connected(_ result: TestEnvironment.RunResult) -> Bool {
                let nodes = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [Any]
                return result.status == 0 && nodes?.isEmpty == true
            }
            func refused(_ result: TestEnvironment.RunResult) -> Bool {
                result.status != 0 && result.stderr.lowercased().contains("authorization")
            }

            // Only a context knows this server's ephemeral port and token.
            #expect(connected(try await ls(["--context", "good"])))
            #expect(refused(try await ls(["--context", "wrong"])))
            try "good\n".write(toFile: config + "/nats/context.txt", atomically: true, encoding: .utf8)
            #expect(connected(try await ls()))
            #expect(refused(try await ls([], ["NATS_CONTEXT": "wrong"])))
            #expect(connected(try await ls(["--context", "good"], ["NATS_CONTEXT": "wrong"])))
            // Flags win over the context's credentials.
            #expect(refused(try await ls(["--token", "not-the-token"])))

            let missing = try await ls(["--context", "nosuch"])
            #expect(missing.status != 0 && missing.stderr.contains("no nats context \"nosuch\""), "\(missing.stderr)")
            let nsc = try await ls(["--context", "viansc"])
            #expect(nsc.status != 0 && nsc.stderr.contains("nats context edit viansc"), "\(nsc.stderr)")
        }
    }

    @Test func nodeUpStartsAnEmbeddedServerWhenNoneIsGiven() async throws {
        // Only meaningful when nothing listens on the default port.
        let probe = NATSClient(configuration: .init(servers: ["nats://127.0.0.1:4222"]))
        if (try? await probe.connect()) != nil {
            await probe.close()
            try #require(TestEnvironment.isCI == false, "something listens on 127.0.0.1:4222")
            return
        }
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("nex-home-\(UUID().uuidString)").path
        let node = try await PeerProcess.start(
            nex, ["node", "up", "--no-sandbox"], environment: ["NEX_HOME": home, "NATS_URL": nil])
        let lines = try await node.waitForLines(3, timeout: .seconds(30))
        #expect(lines.contains { $0.contains("started an embedded nats-server with JetStream") })
        let url = try #require(
            lines.compactMap { line in
                line.split(separator: " ").first { $0.hasPrefix("nats://") }.map { String($0) }
            }.first)
        let ls = try await run(["node", "ls", "--json", "-s", url])
        #expect(ls.status == 0 && ls.stdout.contains("node_id"))
        #expect(FileManager.default.fileExists(atPath: home + "/nats"))
        #expect(try await node.terminate() == 0)
    }
}
