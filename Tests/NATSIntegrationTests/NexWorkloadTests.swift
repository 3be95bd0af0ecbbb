import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// A node in this process with real agents (`nex-agent` child processes, no sandbox) on a real server.
@Suite(.timeLimit(.minutes(2))) struct NexWorkloadTests {
    struct Harness {
        let server: NATSServer
        let client: NATSClient
        let node: NexNode
        let nex: NexControlClient
        let events: MessageRecorder
        let issuer = NKeyPair.generate(.account)
        let publisher = NKeyPair.generate(.curve)

        /// Uploads `file` and deploys it (environment sealed, JWT signed by `issuer`).
        func deploy(
            file: String, name: String, type: String = "native", triggers: [String] = [],
            environment: [String: String] = [:], essential: Bool = false, namespace: String = "default",
            argv: [String] = [], hostServices: HostServicesConfig? = nil, maxConcurrency: Int? = nil,
            triggerList: [WorkloadTrigger]? = nil
        ) async throws -> RunResponse {
            let (location, hash) = try await nex.uploadArtifact(file: file, key: name)
            var request = try NexControlClient.makeDeployRequest(
                name: name, type: type, location: location, hash: hash, environment: environment,
                issuer: issuer, publisher: publisher, targetNode: node.nodeID, targetXkey: node.xkey.publicKey,
                triggerSubjects: triggers, argv: argv, essential: essential, maxConcurrency: maxConcurrency)
            request.hostServicesConfig = hostServices
            request.triggers = triggerList
            var scoped = nex
            scoped.namespace = namespace
            return try await scoped.deploy(request, to: node.nodeID)
        }

        /// The data of `type` events seen so far, decoded.
        func workloadEvents(_ type: String) -> [WorkloadEvent] {
            events.messages.filter { $0.subject.hasSuffix("." + type) }.compactMap {
                try? JSONDecoder().decode(CloudEvent<WorkloadEvent>.self, from: Data($0.payload)).data
            }
        }
    }

    func withNode<T>(
        _ configure: (inout NodeConfiguration) -> Void = { _ in }, tracing: NodeTracer = NodeTracer(),
        _ body: (Harness) async throws -> T
    ) async throws -> T {
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            var config = NodeConfiguration()
            config.noSandbox = true
            config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
            configure(&config)
            let events = try await MessageRecorder(client, subject: "$NEX.events.>")
            let node = NexNode(configuration: config, client: client, heartbeatInterval: .seconds(30), tracing: tracing)
            try await node.start()
            var nex = NexControlClient(client: client, timeout: nodeAnswerTimeout)
            nex.gatherTimeout = .milliseconds(500)
            nex.gatherStall = .milliseconds(200)
            let harness = Harness(server: server, client: client, node: node, nex: nex, events: events)
            do {
                let result = try await body(harness)
                await node.stop(graceful: true)
                return result
            } catch {
                await node.stop(graceful: true)
                throw error
            }
        }
    }

    /// A shell script as a native artifact (executed through its `#!` line).
    func script(_ body: String, in server: NATSServer) throws -> String {
        let path = server.directory.appendingPathComponent("script-\(UUID().uuidString).sh").path
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static var echoService: String { TestEnvironment.builtProduct("echoservice") }

    @Test func echoServiceRunsAnswersAndStopsOnlyForItsIssuer() async throws {
        try await withNode({ $0.machinePoolSize = 2 }) { h in
            // Asked until it answers: at the suite's start a loaded machine can stall past one request's timeout.
            let info0 = try await eventuallyValue("the node answers INFO", timeout: .seconds(60)) {
                try? await h.nex.info(node: h.node.nodeID)
            }
            #expect(info0.machines.isEmpty)
            try await eventually("warm pool full", timeout: .seconds(60)) {
                (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 2
            }

            let run = try await h.deploy(
                file: Self.echoService, name: "echoservice", environment: ["nats_url": h.server.url])
            #expect(run.started && run.name == "echoservice" && run.issuer == h.issuer.publicKey)
            try await eventually("workload_deployed") {
                h.workloadEvents("workload_deployed").contains { $0.workloadID == run.id }
            }
            let reply = try await eventuallyValue("svc.echo answers") {
                try? await h.client.request("test", to: "svc.echo", timeout: .seconds(1))
            }
            #expect(reply.string == "test")

            // INFO: the workload in its namespace only, the pool refilled.
            try await eventually("pool refilled") { (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 2 }
            let info = try await h.nex.info(node: h.node.nodeID)
            #expect(info.machines.map(\.workload.id) == [run.id] && info.machines.first?.healthy == true)
            var other = h.nex
            other.namespace = "other"
            #expect(try await other.info(node: h.node.nodeID).machines.isEmpty)
            // WPING by name and by id; nothing in another namespace.
            // Scatter-gather ends after a fixed window: wait for the round that has the node's answer.
            let byName = try await eventuallyValue("WPING by name") {
                try await h.nex.workloadPing(workload: "echoservice").first
            }
            #expect(byName.runningMachines.first?.id == run.id)
            let byID = try await eventuallyValue("WPING by id") { try await h.nex.workloadPing(workload: run.id).first }
            #expect(byID.nodeID == h.node.nodeID)
            #expect(try await other.workloadPing().isEmpty)
            #expect(try await h.nex.ping(node: h.node.nodeID).runningMachines == 1)

            // Duplicates are refused while allow_duplicate_workloads is false.
            let duplicate = await #expect(throws: NexError.self) {
                try await h.deploy(file: Self.echoService, name: "echoservice")
            }
            #expect(duplicate?.message.contains("already running") == true)

            // Who may stop: not another issuer, not from another namespace, not by replaying the deploy token.
            let stranger = await #expect(throws: NexError.self) {
                try await h.nex.stop(workloadID: run.id, node: h.node.nodeID, issuer: .generate(.account))
            }
            #expect(stranger?.message.contains("only the issuer") == true)
            let elsewhere = await #expect(throws: NexError.self) {
                try await other.stop(workloadID: run.id, node: h.node.nodeID, issuer: h.issuer)
            }
            #expect(elsewhere?.message == "no such workload")
            let stopped = try await h.nex.stop(workloadID: run.id, node: h.node.nodeID, issuer: h.issuer)
            #expect(stopped.stopped && stopped.id == run.id)
            try await eventually("workload_undeployed") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == run.id }
            }
            await #expect(throws: NATSError.self) {
                try await h.client.request("x", to: "svc.echo", timeout: .seconds(1))
            }
            #expect(try await h.nex.info(node: h.node.nodeID).machines.isEmpty)
        }
    }

    @Test func replayedDeployTokenCannotStop() async throws {
        try await withNode { h in
            let file = try script("sleep 30", in: h.server)
            let (location, hash) = try await h.nex.uploadArtifact(file: file, key: "sleeper")
            let request = try NexControlClient.makeDeployRequest(
                name: "sleeper", type: "native", location: location, hash: hash, issuer: h.issuer,
                publisher: h.publisher, targetNode: h.node.nodeID, targetXkey: h.node.xkey.publicKey)
            let run = try await h.nex.deploy(request, to: h.node.nodeID)
            let replay = StopRequest(nodeID: h.node.nodeID, workloadID: run.id, workloadJWT: request.workloadJWT)
            let reply = try await h.client.request(
                Array(try JSONEncoder().encode(replay)), to: NexSubjects.stop(namespace: "default", node: h.node.nodeID)
            )
            let envelope = try JSONDecoder().decode(Envelope<StopResponse>.self, from: Data(reply.bytes))
            #expect(envelope.error?.contains("cannot be replayed") == true)
            #expect(try await h.nex.info(node: h.node.nodeID).machines.count == 1)
        }
    }

    @Test func outputGoesToLogsAndExitCodesToEvents() async throws {
        try await withNode { h in
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.\(h.node.nodeID).talker.*")
            let file = try script("echo \"hello $GREETING\"; echo oops >&2; exit 7", in: h.server)
            let run = try await h.deploy(file: file, name: "talker", environment: ["greeting": "world"])
            try await eventually("workload_undeployed with the exit code") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == run.id && $0.code == 7 }
            }
            try await eventually("both lines logged") { logs.messages.count >= 2 }
            let entries = logs.messages.compactMap { try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)) }
            #expect(entries.contains(LogEntry(text: "hello world", level: LogEntry.info, id: run.id)))
            #expect(entries.contains(LogEntry(text: "oops", level: LogEntry.error, id: run.id)))
            #expect(logs.messages.allSatisfy { $0.subject.hasSuffix(".talker.\(run.id)") })
            // Not essential: no restart.
            try await Task.sleep(for: .milliseconds(500))
            #expect(h.workloadEvents("workload_deployed").count == 1)
        }
    }

    @Test func aVerifiedCopyThatChangedOnDiskIsDownloadedAgain() async throws {
        try await withNode { h in
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.\(h.node.nodeID).marker.*")
            let file = try script("echo original", in: h.server)
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            func lines(of run: RunResponse) async throws -> [String] {
                try await eventually("\(run.id) ran and ended") {
                    h.workloadEvents("workload_undeployed").contains { $0.workloadID == run.id }
                }
                try await eventually("\(run.id) logged") { logs.messages.contains { $0.subject.hasSuffix(run.id) } }
                return logs.messages.filter { $0.subject.hasSuffix(run.id) }.compactMap {
                    try? JSONDecoder().decode(LogEntry.self, from: Data($0.payload)).text
                }
            }
            #expect(try await lines(of: h.deploy(file: file, name: "marker")) == ["original"])
            let verified = h.node.home + "/artifacts/verified/"
            let copies = try FileManager.default.contentsOfDirectory(atPath: verified).filter {
                !$0.hasSuffix(".stamp")
            }
            try #require(copies.count == 1)
            let cached = verified + copies[0]
            #expect(FileManager.default.contents(atPath: cached) == original)
            // Someone replaces the node's verified copy; the same artifact is deployed again.
            try Data("#!/bin/sh\necho tampered\n".utf8).write(to: URL(fileURLWithPath: cached), options: .atomic)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: cached)
            #expect(try await lines(of: h.deploy(file: file, name: "marker")) == ["original"])
            #expect(FileManager.default.contents(atPath: cached) == original)
        }
    }

    @Test func essentialServicesRestartWithBackoffUntilLameDuck() async throws {
        try await withNode({
            $0.restartBackoffInitialMs = 100
            $0.restartBackoffMaxMs = 400
            $0.machinePoolSize = 2
        }) { h in
            let file = try script("echo started; sleep 0.1; exit 3", in: h.server)
            let first = try await h.deploy(file: file, name: "crasher", essential: true)
            // Each restart waits for a warm agent, which a loaded machine may take seconds to start: the
            // deadline only guards against a hang (a restart that finds no agent is tried again, not dropped).
            try await eventually("three restarts", timeout: .seconds(60)) {
                h.workloadEvents("workload_deployed").count >= 4
            }
            let deployed = h.workloadEvents("workload_deployed").map(\.workloadID)
            #expect(deployed.first == first.id && Set(deployed).count == deployed.count)  // a new id each time
            #expect(h.workloadEvents("workload_undeployed").filter { $0.code == 3 }.count >= 3)
            _ = try await h.nex.lameDuck(node: h.node.nodeID)
            // A restart already under way when lame duck began may still run once; then the workload ends and
            // none follows. Waited for by the node's own listing, not a guess at how long a loaded machine takes.
            try await eventually("the crasher is gone", timeout: .seconds(60)) {
                (try? await h.nex.info(node: h.node.nodeID).machines.isEmpty) == true
            }
            let settled = h.workloadEvents("workload_deployed").count
            try await Task.sleep(for: .seconds(1))  // longer than the capped backoff: a restart would show
            #expect(h.workloadEvents("workload_deployed").count == settled)
        }
    }

    @Test func limitsAndUnrunnableArtifactsAreRefused() async throws {
        try await withNode({ $0.nodeLimits.maxWorkloads = 1 }) { h in
            let sleeper = try script("sleep 30", in: h.server)
            _ = try await h.deploy(file: sleeper, name: "one")
            let second = await #expect(throws: NexError.self) { try await h.deploy(file: sleeper, name: "two") }
            #expect(second?.message.contains("max_workloads") == true)
        }
        try await withNode { h in
            let text = h.server.directory.appendingPathComponent("notes.txt").path
            try "just text".write(toFile: text, atomically: true, encoding: .utf8)
            let refused = await #expect(throws: NexError.self) { try await h.deploy(file: text, name: "text") }
            #expect(refused?.message.contains("cannot start") == true)
            // The agent that refused is gone and the pool is whole again.
            try await eventually("pool refilled") { (try? await h.nex.info(node: h.node.nodeID))?.availableAgents == 1 }
        }
    }

    @Test func aKilledWorkloadIsReportedAndCleanedUp() async throws {
        try await withNode { h in
            let file = try script("echo $$ > pid; exec sleep 30", in: h.server)
            let run = try await h.deploy(file: file, name: "victim")
            let info = try await h.nex.info(node: h.node.nodeID)
            let agentID = try #require(info.machines.first?.id)
            let pidFile = h.node.home + "/agents/\(agentID)/pid"
            let pid = try await eventuallyValue("pid written") {
                (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap {
                    Int32($0.trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }
            kill(pid, SIGKILL)
            try await eventually("undeployed with 128+9") {
                h.workloadEvents("workload_undeployed").contains { $0.workloadID == run.id && $0.code == 137 }
            }
            #expect(!FileManager.default.fileExists(atPath: h.node.home + "/agents/\(agentID)"))
        }
    }

    /// The control API as a foreign client uses it: hand-written JSON, the Go `url.URL` object for the
    /// location and `"hash": null` (the hash lives only in the signed token).
    @Test func rawControlAPIDeployFromHandWrittenJSON() async throws {
        try await withNode { h in
            let file = try script("echo raw; sleep 30", in: h.server)
            let (_, hash) = try await h.nex.uploadArtifact(file: file, key: "rawsvc")
            let claims = JWTClaims.generic(
                subject: "req-1", issuer: h.issuer.publicKey,
                fields: ["name": .string("rawsvc"), "hash": .string(hash)])
            let jwt = try NATSJWT.encode(claims, signedBy: h.issuer)
            let env = Data(try h.publisher.seal(Array(#"{"mode":"raw"}"#.utf8), to: h.node.xkey.publicKey))
            let json = """
                {"argv":[],"description":"by hand","hash":null,"location":{"Scheme":"nats","Opaque":"","User":null,
                "Host":"NEXCLIFILES","Path":"/rawsvc","RawPath":"","OmitHost":false,"ForceQuery":false,"RawQuery":"",
                "Fragment":"","RawFragment":""},"essential":false,"environment":"\(env.base64EncodedString())",
                "sender_public_key":"\(h.publisher.publicKey)","target_node":"\(h.node.nodeID)",
                "trigger_subjects":[],"workload_name":"rawsvc","workload_jwt":"\(jwt)","type":"native"}
                """
            let subject = "$NEX.DEPLOY.default.\(h.node.nodeID)"
            let reply = try await h.client.request(json, to: subject, timeout: .seconds(30))
            let object = try JSONSerialization.jsonObject(with: Data(reply.bytes)) as? [String: Any]
            #expect(object?["type"] as? String == "io.nats.nex.v1.run_response")
            let data = try #require(object?["data"] as? [String: Any], "\(reply.string)")
            #expect(data["started"] as? Bool == true && data["name"] as? String == "rawsvc")
            let id = try #require(data["id"] as? String)

            // INFO and WPING as raw requests.
            let info = try await h.client.request("", to: "$NEX.INFO.default.\(h.node.nodeID)")
            #expect(info.string.contains(id) && info.string.contains("\"available_agents\""))
            let wping = try await h.client.request("", to: "$NEX.WPING.default.rawsvc")
            #expect(wping.string.contains("io.nats.nex.v1.ping_response") && wping.string.contains(id))

            // Bad input: an error envelope each time, and the node still answers.
            for bad in [
                #"{"workload_name": 5}"#, "[1,2,3]", "", String(repeating: "x", count: 900_000),
                #"{"location":"nats://B/k","sender_public_key":"X","target_node":"N","workload_name":"a","workload_jwt":"e30.e30.sig","type":"native"}"#,
            ] {
                let r = try await h.client.request(bad, to: subject, timeout: .seconds(10))
                let envelope = try JSONDecoder().decode(Envelope<RunResponse>.self, from: Data(r.bytes))
                #expect(envelope.isFailure && envelope.data == nil, "\(bad.prefix(40)) → \(r.string.prefix(200))")
            }
            let stopBad = try await h.client.request(#"{"workload_id": []}"#, to: "$NEX.STOP.default.\(h.node.nodeID)")
            #expect(stopBad.string.contains("malformed stop request"))
            #expect(try await h.nex.ping(node: h.node.nodeID).runningMachines == 1)
        }
    }

    @Test func autostartDeploysFromConfigWithTheEnvironmentSealed() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("auto-\(UUID().uuidString).sh").path
        try "#!/bin/sh\necho \"auto $SECRET_WORD\"\nsleep 30\n".write(toFile: file, atomically: true, encoding: .utf8)
        // Upload before the node starts, with a throwaway client on the same server.
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            let (location, hash) = try await NexControlClient(client: client).uploadArtifact(file: file, key: "auto")
            var config = NodeConfiguration()
            config.noSandbox = true
            config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
            config.autostart = try JSONDecoder().decode(
                NodeConfiguration.Autostart.self,
                from: Data(
                    """
                    {"workloads":[{"name":"auto","namespace":"tenant","type":"native","location":"\(location)",
                    "hash":"\(hash)","environment":{"secret_word":"swordfish"}}]}
                    """.utf8))
            let logs = try await MessageRecorder(client, subject: "$NEX.logs.tenant.*.auto.*")
            let node = NexNode(configuration: config, client: client)
            try await node.start()
            defer { Task { await node.stop(graceful: true) } }
            var nex = NexControlClient(client: client, namespace: "tenant", timeout: nodeAnswerTimeout)
            nex.gatherTimeout = .milliseconds(500)
            #expect(try await nex.info(node: node.nodeID).machines.map(\.workload.name) == ["auto"])
            try await eventually("the decrypted environment reached the service") {
                logs.messages.contains { String(decoding: $0.payload, as: UTF8.self).contains("auto swordfish") }
            }
            await node.stop(graceful: true)
        }
    }

    @Test func lameDuckCanDrainAndExit() async throws {
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            var config = NodeConfiguration()
            config.noSandbox = true
            config.lameduckDrainAndExit = true
            config.defaultResourceDir = server.directory.appendingPathComponent("nexhome").path
            let events = try await MessageRecorder(client, subject: "$NEX.events.>")
            let node = NexNode(configuration: config, client: client)
            let running = Task { try await node.run() }
            // run() starts the node in its own task: wait for its announcement as long as any start may take
            // (seconds when the whole suite starts its nodes at once; a fresh-clone run missed a 10 s window).
            try await eventually("node up", timeout: .seconds(60)) {
                events.messages.contains { $0.subject.hasSuffix("node_started") }
            }
            var nex = NexControlClient(client: client, timeout: nodeAnswerTimeout)
            nex.gatherTimeout = .milliseconds(500)
            let path = server.directory.appendingPathComponent("sleeper.sh").path
            try "#!/bin/sh\nsleep 30\n".write(toFile: path, atomically: true, encoding: .utf8)
            let (location, hash) = try await nex.uploadArtifact(file: path, key: "sleeper")
            let request = try NexControlClient.makeDeployRequest(
                name: "sleeper", type: "native", location: location, hash: hash, issuer: .generate(.account),
                publisher: .generate(.curve), targetNode: node.nodeID, targetXkey: node.xkey.publicKey)
            _ = try await nex.deploy(request, to: node.nodeID)
            #expect(try await nex.lameDuck(node: node.nodeID).success)
            try await running.value  // run() returns by itself: drained, then stopped
            // run() returns once node_stopped is published; the recorder sees it after the server's round trip
            // (a fresh-clone run read the events before it arrived).
            func types() -> [String] {
                events.messages.map { $0.subject.split(separator: ".").last.map(String.init) ?? "" }
            }
            try await eventually("node_stopped recorded") { types().contains("node_stopped") }
            #expect(types().contains("workload_undeployed") && types().last == "node_stopped")
            // Moved away on purpose: the drained workload's record is gone.
            let journal = node.home + "/workloads"
            let left = (try? FileManager.default.contentsOfDirectory(atPath: journal)) ?? []
            #expect(left.filter { $0.hasSuffix(".json") }.isEmpty, "\(left)")
        }
    }

    /// `triggers`: a subject trigger in a queue group of its own runs the function (without any
    /// trigger_subjects); a trigger of a service is refused.
    @Test func subjectTriggersRunInTheirOwnQueueGroup() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            let echo = examples + "/echofunction.js"
            _ = try await h.deploy(
                file: echo, name: "queued", type: "v8",
                triggerList: [.subject(SubjectTrigger(subject: "q.echo", queue: "own-group"))])
            // A queue subscriber of the same group shares the messages: the node's subscription is in it. (All
            // 40 going to one side would happen once in 10^11 runs.)
            let client = h.client
            let peer = try await client.subscribe(to: "q.echo", queue: "own-group") { m in
                if let reply = m.replyTo { try? await client.publish("peer", to: reply) }  // a test peer
            }
            try await client.flush()
            var byFunction = 0
            for i in 0..<40 {
                let reply = try await client.request("m\(i)", to: "q.echo", timeout: .seconds(5))
                if reply.string == "m\(i)" { byFunction += 1 } else { #expect(reply.string == "peer") }
            }
            #expect(byFunction > 0 && byFunction < 40, "the function and the peer split the group: \(byFunction)")
            peer.unsubscribeNow()

            let service = await #expect(throws: NexError.self) {
                try await h.deploy(
                    file: Self.echoService, name: "svc", triggerList: [.subject(SubjectTrigger(subject: "s.x"))])
            }
            #expect(service?.message.contains("triggers apply to functions") == true, "\(String(describing: service))")
        }
    }

    /// Acceptance scenario 4: a JavaScript function on a trigger, wildcards, events, errors readable.
    @Test func javaScriptFunctionsAnswerTheirTriggers() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            let logs = try await MessageRecorder(h.client, subject: "$NEX.logs.default.*.echofunction.*")
            let echo = try await h.deploy(
                file: examples + "/echofunction.js", name: "echofunction", type: "v8", triggers: ["js.echo"])
            let reply = try await h.client.request("heya", to: "js.echo", timeout: .seconds(5))
            #expect(reply.string == "heya" && reply.headers?["Nats-Service-Error"] == nil)
            try await eventually("console.log in the logs") {
                logs.messages.contains { String(decoding: $0.payload, as: UTF8.self).contains("triggered on js.echo") }
            }
            let succeeded = try await eventuallyValue("function_exec_succeeded") {
                h.events.messages.first { $0.subject == "$NEX.events.default.function_exec_succeeded" }
            }
            let event = try JSONDecoder().decode(CloudEvent<FunctionExecEvent>.self, from: Data(succeeded.payload)).data
            #expect(event.workloadID == echo.id && event.triggerSubject == "js.echo" && (event.elapsedNanos ?? 0) > 0)

            _ = try await h.deploy(file: examples + "/calc.js", name: "calc", type: "v8", triggers: ["calc.*"])
            #expect(
                try await h.client.request("[2,3]", to: "calc.add", timeout: .seconds(5)).string == #"{"result":5}"#)
            #expect(
                try await h.client.request("[2,3]", to: "calc.mul", timeout: .seconds(5)).string == #"{"result":6}"#)
            // A thrown error: the requester reads it at once, and function_exec_failed says why.
            let failed = try await h.client.request("[2,3]", to: "calc.div", timeout: .seconds(5))
            #expect(failed.headers?["Nats-Service-Error"]?.contains("unknown operation div") == true)
            #expect(failed.string.contains("Error: unknown operation div"))
            try await eventually("function_exec_failed") {
                h.events.messages.contains { $0.subject == "$NEX.events.default.function_exec_failed" }
            }
            // A plain publish just runs it; then stopping removes the trigger.
            try await h.client.publish("[1,1]", to: "calc.add")
            _ = try await h.nex.stop(workloadID: echo.id, node: h.node.nodeID, issuer: h.issuer)
            try await eventually("js.echo has no responders after the stop") {
                do {
                    _ = try await h.client.request("x", to: "js.echo", timeout: .seconds(1))
                    return false
                } catch { return true }
            }
        }
    }

    /// Acceptance scenarios 5 and 6 (key-value and messaging): brokered by the node, private per workload.
    @Test func hostServicesKeyValueAndMessaging() async throws {
        try await withNode({ $0.workloadTypes = [.v8] }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            _ = try await h.deploy(file: examples + "/kv.js", name: "kvfn", type: "v8", triggers: ["fn.kv"])
            let reply = try await h.client.request("payload-1", to: "fn.kv", timeout: .seconds(10))
            #expect(reply.string == #"{"keys":["hello2"],"hello2":"payload-1"}"#, "\(reply.string)")
            // Another function (same code, another name) has its own bucket.
            let other = h.server.directory.appendingPathComponent("peek.js").path
            try "(s, p) => this.hostServices.kv.keys()".write(toFile: other, atomically: true, encoding: .utf8)
            _ = try await h.deploy(file: other, name: "peek", type: "v8", triggers: ["fn.peek"])
            #expect(try await h.client.request("", to: "fn.peek", timeout: .seconds(10)).string == "[]")

            // Messaging: publish seen outside, request answered outside, requestMany gathers.
            let notes = try await h.client.subscribe(to: "fn.note")
            try await h.client.subscribe(to: "fn.svc") { m in
                if let r = m.replyTo { try await h.client.publish("svc:" + m.string, to: r) }
            }
            for i in 0..<3 {
                try await h.client.subscribe(to: "fn.many") { m in
                    if let r = m.replyTo { try await h.client.publish("many\(i)", to: r) }
                }
            }
            try await h.client.flush()
            _ = try await h.deploy(
                file: examples + "/messaging.js", name: "msgfn", type: "v8", triggers: ["fn.msg"])
            let answer = try await h.client.request("hi", to: "fn.msg", timeout: .seconds(10))
            #expect(answer.string == #"{"reply":"svc:hi","many":3}"#, "\(answer.string)")
            #expect(try await notes.nextMessage(timeout: .seconds(5))?.string == "hi")

            // The subject policy holds for host calls too.
            let sneaky = h.server.directory.appendingPathComponent("sneaky.js").path
            try "(s, p) => this.hostServices.messaging.publish('$SYS.REQ.SERVER.PING', p)".write(
                toFile: sneaky, atomically: true, encoding: .utf8)
            _ = try await h.deploy(file: sneaky, name: "sneaky", type: "v8", triggers: ["fn.sneaky"])
            let refused = try await h.client.request("", to: "fn.sneaky", timeout: .seconds(10))
            #expect(refused.headers?["Nats-Service-Error"]?.contains("not allowed") == true)
        }
    }

    /// `host_services_config`: a deploy that names another server gets its bucket there (a loopback server only
    /// because the operator allows it: the egress policy of the http service holds for it too); the node's
    /// switches turn a service off.
    @Test func hostServicesFollowTheDeployAndTheNodeConfiguration() async throws {
        try await NATSServer.with(.init(jetStream: true)) { elsewhere in
            try await withNode({
                $0.workloadTypes = [.v8]
                $0.hostServicesConfig = try! JSONDecoder().decode(
                    NodeConfiguration.HostServices.self,
                    from: Data(
                        #"{"services": {"http": {"enabled": false, "config": {"allow": "127.0.0.1:\#(elsewhere.port)"}}}}"#
                            .utf8))
            }) { h in
                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                _ = try await h.deploy(
                    file: examples + "/kv.js", name: "remotekv", type: "v8", triggers: ["fn.remotekv"],
                    hostServices: HostServicesConfig(natsURL: elsewhere.url))
                let reply = try await h.client.request("far", to: "fn.remotekv", timeout: .seconds(10))
                #expect(reply.string == #"{"keys":["hello2"],"hello2":"far"}"#, "\(reply.string)")
                let bucket = HostServicesBroker.bucket(prefix: "NEXKV_", namespace: "default", name: "remotekv")
                try await withClient([elsewhere.url]) { far in
                    let kv = try await JetStreamContext(client: far).keyValue(bucket)
                    #expect(try await kv.get("hello2")?.string == "far")
                }
                await #expect(throws: (any Error).self) {
                    try await JetStreamContext(client: h.client).keyValue(bucket)
                }

                _ = try await h.deploy(file: examples + "/http.js", name: "nohttp", type: "v8", triggers: ["fn.nohttp"])
                let refused = try await h.client.request("http://127.0.0.1:1/", to: "fn.nohttp", timeout: .seconds(10))
                #expect(refused.string.contains("disabled on this node"), "\(refused.string)")
            }
        }
    }

    /// Acceptance scenarios 6 and 7 (object store, HTTP).
    @Test func hostServicesObjectStoreAndHTTP() async throws {
        let python = try #require(TestEnvironment.python, "run scripts/setup.sh")
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/http_echo.py").path
        let web = try await PeerProcess.start(python, [script])
        defer { web.signal(SIGKILL) }
        let port = try #require(try await web.waitForLines(1).first)
        try await withNode({
            $0.workloadTypes = [.v8]
            // The server is on this host, which functions may reach only when the operator allows it.
            $0.hostServicesConfig = try! JSONDecoder().decode(
                NodeConfiguration.HostServices.self,
                from: Data(
                    #"{"services": {"http": {"enabled": true, "config": {"allow": "127.0.0.1:\#(port)"}}}}"#.utf8))
        }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            _ = try await h.deploy(file: examples + "/objectstore.js", name: "osfn", type: "v8", triggers: ["fn.os"])
            let stored = try await h.client.request("bonjour", to: "fn.os", timeout: .seconds(10))
            #expect(stored.string == #"{"back":"bonjour","objects":["greeting"],"missing":null}"#, "\(stored.string)")

            _ = try await h.deploy(file: examples + "/http.js", name: "httpfn", type: "v8", triggers: ["fn.http"])
            let url = "http://127.0.0.1:\(port)/x"
            let answer = try await h.client.request(url, to: "fn.http", timeout: .seconds(15))
            let object = try JSONSerialization.jsonObject(with: Data(answer.bytes)) as? [String: Any]
            #expect(object?["get"] as? Int == 200 && object?["del"] as? Int == 204 && object?["head"] as? Int == 200)
            #expect(object?["type"] as? String == "application/json", "\(answer.string)")
            #expect((object?["body"] as? String)?.contains(#""x_from": "nex""#) == true)
            #expect((object?["post"] as? String)?.contains(#""body": "hello""#) == true)
            let bad = try await h.client.request("file:///etc/passwd", to: "fn.http", timeout: .seconds(10))
            #expect(bad.headers?["Nats-Service-Error"]?.contains("not an http(s) URL") == true)
            let inside = try await h.client.request("http://localhost:1/", to: "fn.http", timeout: .seconds(10))
            let refusal = inside.headers?["Nats-Service-Error"] ?? ""
            #expect(refusal.contains("refused to connect to localhost (127.0.0.1) port 1"), "\(refusal)")
            #expect(refusal.contains("services.http.config.allow"), "\(refusal)")
        }
    }

    /// Acceptance scenario 8, and host services for WebAssembly through the `nex` import module.
    @Test func webAssemblyFunctionsWithHostServices() async throws {
        try await withNode({ $0.workloadTypes = [.wasm] }) { h in
            let wasm = TestEnvironment.packageRoot.appendingPathComponent("examples/wasm").path
            _ = try await h.deploy(
                file: wasm + "/echofunction.wasm", name: "echowasm", type: "wasm", triggers: ["wasm.*"])
            let reply = try await h.client.request("hello", to: "wasm.echo", timeout: .seconds(10))
            #expect(reply.string == "hellowasm.echo")
            try await eventually("function_exec_succeeded") {
                h.events.messages.contains { $0.subject == "$NEX.events.default.function_exec_succeeded" }
            }
            _ = try await h.deploy(file: wasm + "/kvfunction.wasm", name: "kvwasm", type: "wasm", triggers: ["kv.wasm"])
            let stored = try await h.client.request("bonjour", to: "kv.wasm", timeout: .seconds(10))
            #expect(
                stored.string == #"{"keys":["last"],"last":{"$bytes":[98,111,110,106,111,117,114]}}"#,
                "\(stored.string)")
            _ = try await h.deploy(file: wasm + "/limits.wasm", name: "limitswasm", type: "wasm", triggers: ["lim.*"])
            let failed = try await h.client.request("", to: "lim.fail", timeout: .seconds(10))
            #expect(failed.headers?["Nats-Service-Error"]?.contains("exited with code 3") == true)
            #expect(try await h.client.request("", to: "lim.ok", timeout: .seconds(10)).string == "ok")
        }
    }

    /// Limits through the node: a runaway loop, a heap bomb and a huge reply are each answered with an error,
    /// and the function (and node) keep answering.
    @Test func functionLimitsAreAnswersAndTheNodeStaysHealthy() async throws {
        try await withNode({
            $0.workloadTypes = [.v8]
            $0.functionLimits = FunctionLimits(cpuMillis: 200, memoryMiB: 32)
        }) { h in
            let file = h.server.directory.appendingPathComponent("wild.js").path
            try """
            (subject, payload) => {
              if (subject === 'wild.spin') { while (true) {} }
              if (subject === 'wild.bomb') { const a = []; while (true) a.push({ n: a.length }); }
              if (subject === 'wild.huge') { return 'x'.repeat(4 << 20); }
              return 'calm';
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
            _ = try await h.deploy(file: file, name: "wild", type: "v8", triggers: ["wild.*"])
            let spin = try await h.client.request("", to: "wild.spin", timeout: .seconds(10))
            #expect(spin.headers?["Nats-Service-Error"]?.contains("CPU limit (200 ms)") == true)
            let bomb = try await h.client.request("", to: "wild.bomb", timeout: .seconds(20))
            // Usually the heap limit; on a loaded machine the 200 ms of CPU can run out first. Either stops it.
            let bombError = bomb.headers?["Nats-Service-Error"] ?? ""
            #expect(bombError.contains("heap limit") || bombError.contains("CPU limit (200 ms)"), "\(bombError)")
            let huge = try await h.client.request("", to: "wild.huge", timeout: .seconds(10))
            #expect(huge.headers?["Nats-Service-Error"]?.contains("could not be sent") == true)
            #expect(try await h.client.request("", to: "wild.ok", timeout: .seconds(10)).string == "calm")
            #expect(try await h.nex.ping(node: h.node.nodeID).runningMachines == 1)
        }
    }

    /// Control requests are answered concurrently: while one deploy waits for an agent that never comes,
    /// PING, INFO and a second deploy are answered. (With one handler per subscription, the second deploy
    /// waited behind the first.)
    @Test func aSlowDeployHoldsUpNeitherPingNorAnotherDeploy() async throws {
        try await withNode({
            $0.workloadTypes = [.v8]
            $0.agentHandshakeTimeoutMs = 60_000
            $0.agentPath = "/bin/true"  // an agent that exits before its handshake: the pool never fills
        }) { h in
            let file = h.server.directory.appendingPathComponent("echo.js").path
            try "(s, p) => p".write(toFile: file, atomically: true, encoding: .utf8)
            let slow = Task { try await h.deploy(file: file, name: "slow", type: "v8", triggers: ["slow.echo"]) }
            defer { slow.cancel() }
            // INFO answers while the deploy waits for its agent, and shows it.
            let starting = try await eventuallyValue("the slow deploy waits for an agent") {
                try await h.nex.info(node: h.node.nodeID).machines.first { $0.workload.name == "slow" }
            }
            #expect(starting.healthy == false)
            let ping = try await h.nex.ping(node: h.node.nodeID)
            #expect(ping.nodeID == h.node.nodeID)
            // Another deploy is answered beside it: of the same name, refused as a duplicate; of a type this
            // node does not run, refused for that.
            let duplicate = await #expect(throws: NexError.self) {
                try await h.deploy(file: file, name: "slow", type: "v8", triggers: ["slow.again"])
            }
            #expect(duplicate?.message.contains("already running") == true, "\(String(describing: duplicate))")
            await #expect(throws: NexError.self) {
                try await h.deploy(file: file, name: "native", type: "native")
            }
        }
    }

    /// A node's shutdown cancels its timers and background work and waits for all of it.
    @Test func aStoppedNodeLeavesNoTaskBehind() async throws {
        try await withNode({ $0.workloadTypes = [.v8] }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            _ = try await h.deploy(file: examples + "/kv.js", name: "kvfn", type: "v8", triggers: ["fn.kv"])
            _ = try await h.client.request("hi", to: "fn.kv", timeout: .seconds(10))
            let runtime = try #require(h.node.runtime)
            #expect(runtime.pool.tasks.count > 0, "the pool watches its agents")
            await h.node.stop(graceful: true)
            #expect(runtime.pool.tasks.count == 0 && runtime.manager.tasks.count == 0)
            #expect(runtime.pool.tasks.spawn {} == nil, "nothing starts after shutdown")
        }
    }

    @Test func functionsThatDoNotCompileAreRefused() async throws {
        try await withNode({ $0.workloadTypes = [.v8] }) { h in
            let file = h.server.directory.appendingPathComponent("broken.js").path
            try "(subject, payload) => {".write(toFile: file, atomically: true, encoding: .utf8)
            let refused = await #expect(throws: NexError.self) {
                try await h.deploy(file: file, name: "broken", type: "v8", triggers: ["js.broken"])
            }
            #expect(refused?.message.contains("does not compile") == true)
        }
    }

    /// An agent is told who it is and where its link is, and nothing else: no server, no credentials.
    @Test func anAgentIsToldOnlyWhoItIsAndWhereItsLinkIs() async throws {
        try await withNode { h in
            let home = h.server.directory.appendingPathComponent("nexhome").path
            let agent = try await eventuallyValue("a warm agent of this node") {
                Self.agentProcesses(under: home).first
            }
            let environ = try String(contentsOfFile: "/proc/\(agent)/environ", encoding: .utf8)
            let names = Set(environ.split(separator: "\0").map { String($0.prefix { $0 != "=" }) })
            #expect(names == ["NEX_AGENT_ID", "NEX_AGENT_LINK_FD", "PATH"], "\(names)")
        }
    }

    /// The `nex-agent` processes working in a directory under `home` (one node's agents).
    static func agentProcesses(under home: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
            guard comm.hasPrefix("nex-agent") else { return false }
            let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
            return cwd.hasPrefix(home)
        }
    }
}

/// Records every message on a subscription.
final class MessageRecorder: Sendable {
    struct Seen: Sendable {
        var subject: String
        var payload: [UInt8]
        var received = Date()
    }

    let seen = Locked<[Seen]>([])
    let task: Task<Void, Never>

    init(_ client: NATSClient, subject: String) async throws {
        let sub = try await client.subscribe(to: subject)
        try await client.flush()
        let seen = self.seen
        task = Task {
            do {
                for try await m in sub { seen.withLock { $0.append(Seen(subject: m.subject, payload: m.bytes)) } }
            } catch {}
        }
    }

    deinit { task.cancel() }

    var messages: [Seen] { seen.value }
}

/// Polls `produce` until it returns a value.
func eventuallyValue<T: Sendable>(
    _ what: String, timeout: Duration = .seconds(15), _ produce: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let value = try await produce() { return value }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestEnvironment.Failure("timed out waiting for \(what)")
}
