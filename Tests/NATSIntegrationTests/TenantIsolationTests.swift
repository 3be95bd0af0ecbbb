import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import NexControlClient
import NexModels
import Testing

@testable import NexNode

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 24: a hostile tenant attacks from real workloads on a real node, the way it would in production.
/// Every target is the test's own: buckets, inboxes and subjects on the test's nats-server, and TCP listeners
/// on 127.0.0.1. Each attack checks both sides: the attacker is refused with the rule that refused it, and
/// the target saw nothing. (The dashboard's unauthenticated stop is attacked in NexDashboardTests, through the
/// real `nex ui` binary.) Heavy: each test runs a node with agents, one at a time beside the other heavy suites.
extension HeavyTests {
    @Suite(.timeLimit(.minutes(12))) struct TenantIsolationTests {
        /// The attacker's function: its payload names a messaging call (`{"op", "subject", "data"}`); it answers
        /// `DONE` or `REFUSED <the host service's error>`.
        static let attacker = """
            (subject, payload) => {
              const attack = JSON.parse(new TextDecoder().decode(payload));
              const m = this.hostServices.messaging;
              try {
                if (attack.op === 'publish') m.publish(attack.subject, attack.data);
                else m.request(attack.subject, attack.data);
                return 'DONE';
              } catch (e) {
                return 'REFUSED ' + e.message;
              }
            };
            """

        func send(
            _ h: NexWorkloadTests.Harness, _ op: String, _ subject: String, data: String = "pwned"
        ) async throws -> String {
            let body = try JSONSerialization.data(withJSONObject: ["op": op, "subject": subject, "data": data])
            return try await h.client.request(Array(body), to: "a.attack", timeout: .seconds(10)).string
        }

        @Test func aFunctionCannotReachAnotherTenantsDataOrInboxesThroughMessaging() async throws {
            try await NexWorkloadTests().withNode({
                $0.workloadTypes = [.v8]
                // Tenant a may use its own subjects only.
                $0.subjectPolicy.namespaces = ["a": ["a.>"]]
            }) { h in
                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                // Tenant b keeps a secret in its private bucket.
                _ = try await h.deploy(
                    file: examples + "/kv.js", name: "vault", type: "v8", triggers: ["b.vault"], namespace: "b")
                let stored = try await h.client.request("secret", to: "b.vault", timeout: .seconds(10))
                #expect(stored.string.contains(#""hello2":"secret""#), "\(stored.string)")
                let bucket = HostServicesBroker.bucket(prefix: "NEXKV_", namespace: "b", name: "vault")
                let objects = HostServicesBroker.bucket(prefix: "NEXOS_", namespace: "b", name: "vault")

                // What the attacks aim at, watched on the test's own connection (the node's too: its publishes
                // come back to it in order).
                let targets = [
                    "$KV.\(bucket).>", "$O.\(objects).>", "$JS.API.>", "_INBOX.victim.>", "b.vault.spy", "$SRV.>",
                ]
                var spies: [(String, NATSSubscription)] = []
                for subject in targets { spies.append((subject, try await h.client.subscribe(to: subject))) }
                let canary = try await h.client.subscribe(to: "a.canary")
                try await h.client.flush()

                let file = h.server.directory.appendingPathComponent("attacker.js").path
                try Self.attacker.write(toFile: file, atomically: true, encoding: .utf8)
                _ = try await h.deploy(file: file, name: "attacker", type: "v8", triggers: ["a.attack"], namespace: "a")
                // JetStream's own traffic (the deploy's artifact, b's bucket) is over: from here on the API spy
                // would see only the attacks.
                for (_, spy) in spies {
                    while spy.pendingMessages > 0 { _ = try await spy.nextMessage(timeout: .seconds(1)) }
                }

                let attacks: [(op: String, subject: String, rule: String)] = [
                    ("publish", "$KV.\(bucket).hello2", "reserved"),  // overwrite b's key
                    ("publish", "$O.\(objects).M.Z3JlZXRpbmc", "reserved"),  // forge b's object metadata
                    ("request", "$JS.API.STREAM.DELETE.KV_\(bucket)", "reserved"),  // delete b's bucket
                    ("request", "$JS.API.STREAM.LIST", "reserved"),  // list every tenant's buckets
                    ("request", "$SRV.PING", "reserved"),  // enumerate services
                    ("publish", "_INBOX.victim.1", "inbox"),  // answer someone else's request
                    ("publish", "b.vault.spy", "namespace_allow"),  // outside a's own subjects
                ]
                for attack in attacks {
                    let answer = try await send(h, attack.op, attack.subject)
                    #expect(answer.hasPrefix("REFUSED"), "\(attack.subject): \(answer)")
                    #expect(answer.contains("rule \(attack.rule)"), "\(attack.subject): \(answer)")
                }
                // a's own subjects work, through the same path: once the canary is here, anything an attack had
                // published (earlier, on the same connection) would be here too.
                #expect(try await send(h, "publish", "a.canary", data: "alive") == "DONE")
                #expect(try await canary.nextMessage(timeout: .seconds(10))?.string == "alive")
                for (subject, spy) in spies { #expect(spy.pendingMessages == 0, "\(subject) saw an attack") }

                // b's data is as it left it.
                let kv = try await JetStreamContext(client: h.client).keyValue(bucket)
                #expect(try await kv.get("hello2")?.string == "secret")

                // Every refusal is counted by namespace, use and rule.
                let text = String(decoding: await h.node.metrics.render(h.node.metricsSnapshot()), as: UTF8.self)
                let counted = text.split(separator: "\n").filter {
                    $0.hasPrefix("nex_subject_refusals_total{") && $0.contains(#"namespace="a""#)
                }
                let total = counted.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
                #expect(total == Double(attacks.count), "\(counted)")
                #expect(counted.contains { $0.contains(#"rule="inbox""#) && $0.contains(#"use="publish""#) })
            }
        }

        /// The reply subject of a trigger is the requester's choice, and the answer is published with the node's
        /// connection: a requester naming another tenant's key as its "inbox" must not get the node to write it.
        @Test func aTriggersReplySubjectCannotAimTheAnswerAtAnotherTenant() async throws {
            try await NexWorkloadTests().withNode({ $0.workloadTypes = [.v8] }) { h in
                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                _ = try await h.deploy(
                    file: examples + "/kv.js", name: "vault", type: "v8", triggers: ["b.vault"], namespace: "b")
                _ = try await h.client.request("secret", to: "b.vault", timeout: .seconds(10))
                let bucket = HostServicesBroker.bucket(prefix: "NEXKV_", namespace: "b", name: "vault")
                _ = try await h.deploy(
                    file: examples + "/echofunction.js", name: "echo", type: "v8", triggers: ["a.echo"], namespace: "a")
                let spy = try await h.client.subscribe(to: "$KV.\(bucket).>")
                let ran = try await h.client.subscribe(to: "$NEX.events.a.function_exec_succeeded")
                try await h.client.flush()

                try await h.client.publish("pwned", to: "a.echo", replyTo: "$KV.\(bucket).hello2")
                // The answer is queued before the function's event on the node's connection: once the event is
                // here, an answer that had been sent would be too.
                #expect(try await ran.nextMessage(timeout: .seconds(10)) != nil)
                #expect(spy.pendingMessages == 0, "the answer reached b's bucket")
                let kv = try await JetStreamContext(client: h.client).keyValue(bucket)
                #expect(try await kv.get("hello2")?.string == "secret")
                // A real requester is answered as always.
                #expect(try await h.client.request("hi", to: "a.echo", timeout: .seconds(10)).string.contains("hi"))
                let text = String(decoding: await h.node.metrics.render(h.node.metricsSnapshot()), as: UTF8.self)
                #expect(
                    text.split(separator: "\n").contains {
                        $0.hasPrefix("nex_subject_refusals_total{") && $0.contains(#"use="reply""#)
                            && $0.contains(#"namespace="a""#)
                    }, "\(text)")
            }
        }

        @Test func triggersOnReservedSubjectsAreRefusedAtDeploy() async throws {
            try await NexWorkloadTests().withNode({
                $0.workloadTypes = [.v8]
                $0.subjectPolicy.namespaces = ["a": ["a.>"]]
            }) { h in
                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                let bucket = HostServicesBroker.bucket(prefix: "NEXKV_", namespace: "b", name: "vault")
                for (trigger, rule) in [
                    ("$KV.\(bucket).>", "reserved"), ("_INBOX.>", "inbox"), (">", "reserved"),
                    ("b.vault", "namespace_allow"),
                ] {
                    let refused = await #expect(throws: NexError.self) {
                        try await h.deploy(
                            file: examples + "/echofunction.js", name: "tap", type: "v8", triggers: [trigger],
                            namespace: "a")
                    }
                    #expect(refused?.message.contains("rule \(rule)") == true, "\(trigger): \(refused?.message ?? "")")
                }
                let machines = try await h.nex.info(node: h.node.nodeID).machines
                #expect(machines.isEmpty)
            }
        }

        @Test func aDeployCannotMakeTheNodeDialWhereItNames() async throws {
            let target = try LoopbackListener()
            defer { target.close() }
            try await NexWorkloadTests().withNode({ $0.workloadTypes = [.v8] }) { h in
                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                // A literal address is refused at deploy, with what the operator can do.
                let refused = await #expect(throws: NexError.self) {
                    try await h.deploy(
                        file: examples + "/kv.js", name: "dialer", type: "v8", triggers: ["a.dial"], namespace: "a",
                        hostServices: HostServicesConfig(natsURL: "nats://127.0.0.1:\(target.port)"))
                }
                #expect(refused?.message.contains("refused to connect to 127.0.0.1 port \(target.port)") == true)
                #expect(refused?.message.contains("services.http.config.allow") == true, "\(refused?.message ?? "")")
                // A name is resolved when the node connects, and every address it resolves to is checked then.
                _ = try await h.deploy(
                    file: examples + "/kv.js", name: "dialer", type: "v8", triggers: ["a.dial"], namespace: "a",
                    hostServices: HostServicesConfig(natsURL: "nats://localhost:\(target.port)"))
                let answer = try await h.client.request("x", to: "a.dial", timeout: .seconds(10))
                let error = answer.headers?["Nats-Service-Error"] ?? answer.string
                #expect(error.contains("cannot reach the host services server"), "\(error)")
                #expect(error.contains("refused to connect to localhost"), "\(error)")
                #expect(target.connectionsWaiting() == 0, "the node connected to the deploy's server")
            }
        }

        @Test func aSandboxedServiceGetsPathsOnlyToTheNodesOwnServers() async throws {
            let escape = try await NexSandboxTests.escapeProgram()
            let target = try LoopbackListener()
            defer { target.close() }
            try await NexSandboxTests().withSandboxedNode { h in
                for environment in [
                    ["NATS_URL": "nats://127.0.0.1:\(target.port)"],
                    ["nats_url": "\(h.server.url),nats://127.0.0.1:\(target.port)"],
                    ["NEX_HOSTSERVICES_NATS_SERVER": "127.0.0.1:\(target.port)"],
                ] {
                    let refused = await #expect(throws: NexError.self) {
                        try await h.deploy(
                            file: escape, name: "tunnel", environment: environment, argv: ["natsecho", "x"])
                    }
                    let message = refused?.message ?? ""
                    #expect(
                        message.contains("127.0.0.1:\(target.port), which this node's sandboxes may not reach"),
                        "\(message)")
                    #expect(message.contains("127.0.0.1:\(h.server.port)") && message.contains("sandbox_nats_servers"))
                }
                let viaDeploy = await #expect(throws: NexError.self) {
                    try await h.deploy(
                        file: escape, name: "tunnel", argv: ["natsecho", "x"],
                        hostServices: HostServicesConfig(natsURL: "nats://127.0.0.1:\(target.port)"))
                }
                #expect(viaDeploy?.message.contains("may not reach") == true, "\(viaDeploy?.message ?? "")")
                let machines = try await h.nex.info(node: h.node.nodeID).machines
                #expect(machines.isEmpty)
                #expect(target.connectionsWaiting() == 0, "a forwarder dialled the deploy's address")
            }
        }
    }
}

/// A TCP listener of the test's own on 127.0.0.1 that never accepts: a connection made to it waits in its
/// backlog, where ``connectionsWaiting()`` finds it without any timing.
final class LoopbackListener: Sendable {
    let port: Int
    private let descriptor: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else {
            throw TestEnvironment.Failure("cannot listen on 127.0.0.1")
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Connections made so far (each accepted now, and closed).
    func connectionsWaiting() -> Int {
        var count = 0
        while true {
            let connection = accept(descriptor, nil, nil)
            guard connection >= 0 else { return count }
            count += 1
            Glibc.close(connection)
        }
    }

    func close() { Glibc.close(descriptor) }
}
