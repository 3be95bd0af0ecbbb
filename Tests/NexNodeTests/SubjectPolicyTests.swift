import Foundation
import Testing

@testable import NexNode

@Suite struct SubjectPolicyTests {
    private func rule(
        _ policy: SubjectPolicy, _ subject: String, namespace: String = "default",
        use: SubjectPolicy.Use = .publish
    ) -> SubjectPolicy.Rule? {
        policy.refusal(for: subject, namespace: namespace, use: use)?.rule
    }

    @Test func everyDollarSubjectAndInboxIsRefusedByDefault() {
        let policy = SubjectPolicy()
        for subject in [
            "$SYS.REQ.SERVER.PING", "$JS.API.STREAM.LIST", "$KV.NEXKV_abc.key", "$O.NEXOS_abc.C.x", "$NEX.PING",
            "$SRV.PING", "$FUTURE.thing", "$G",
        ] {
            #expect(rule(policy, subject) == .reserved, "\(subject)")
        }
        for subject in ["_INBOX.abc.1", "_INBOX.x", "_INBOX_app.x.1"] {
            #expect(rule(policy, subject) == .inbox, "\(subject)")
        }
        // Wildcard triggers that could match them.
        for pattern in [">", "*.x", "*"] { #expect(rule(policy, pattern, use: .trigger) == .reserved, "\(pattern)") }
        #expect(rule(policy, "_INBOX.*", use: .trigger) == .inbox)
        for subject in ["orders.new", "calc.*", "a.>", "INBOX.x", "x._INBOX.y", "my$subject"] {
            #expect(rule(policy, subject, use: .trigger) == nil, "\(subject)")
        }
    }

    @Test func reservedSubjectsOpenOnlyWhenNamed() {
        var policy = SubjectPolicy(allowReserved: ["$SRV.PING", "$KV.shared.>"])
        #expect(rule(policy, "$SRV.PING") == nil)
        #expect(rule(policy, "$SRV.INFO") == .reserved)
        #expect(rule(policy, "$KV.shared.k") == nil)
        #expect(rule(policy, "$KV.NEXKV_other.k") == .reserved)
        // A wildcard never names a reserved token.
        policy = SubjectPolicy(namespaces: ["acme": [">"]])
        #expect(rule(policy, "$KV.x.y", namespace: "acme") == .reserved)
        #expect(rule(policy, "_INBOX.x", namespace: "acme") == .inbox)
        // A namespace's own list may name one for itself alone.
        policy = SubjectPolicy(namespaces: ["acme": ["acme.>", "$KV.acme.>"]])
        #expect(rule(policy, "$KV.acme.k", namespace: "acme") == nil)
        #expect(rule(policy, "$KV.acme.k", namespace: "other") == .reserved)
    }

    @Test func namespaceAllowListsNarrow() {
        let policy = SubjectPolicy(allowReserved: ["$SRV.PING"], namespaces: ["acme": ["acme.>", "orders.*"]])
        #expect(rule(policy, "acme.x.y", namespace: "acme") == nil)
        #expect(rule(policy, "orders.new", namespace: "acme") == nil)
        #expect(rule(policy, "orders.new.eu", namespace: "acme") == .namespaceAllow)
        #expect(rule(policy, "billing.x", namespace: "acme") == .namespaceAllow)
        // Opened for all, but acme's list does not cover it.
        #expect(rule(policy, "$SRV.PING", namespace: "acme") == .namespaceAllow)
        // A trigger pattern must lie wholly inside the list.
        #expect(rule(policy, "acme.*", namespace: "acme", use: .trigger) == nil)
        #expect(rule(policy, "orders.>", namespace: "acme", use: .trigger) == .namespaceAllow)
        // Namespaces without a list keep the defaults.
        #expect(rule(policy, "billing.x", namespace: "other") == nil)
    }

    /// A trigger's answer goes where its requester says, on the node's connection: inboxes and the server's
    /// reply prefixes, not reserved subjects or (in a narrowed namespace) other subjects.
    @Test func repliesGoToInboxesOnly() {
        let policy = SubjectPolicy(namespaces: ["a": ["a.>"]])
        for reply in ["_INBOX.abc.1", "_INBOX_app.x", "_R_.xyz.1", "_GR_.c.1"] {
            #expect(policy.replyRefusal(reply, namespace: "a") == nil, "\(reply)")
        }
        #expect(policy.replyRefusal("$KV.B.key", namespace: "other")?.rule == .reserved)
        #expect(policy.replyRefusal("$JS.API.STREAM.DELETE.X", namespace: "a")?.rule == .reserved)
        #expect(policy.replyRefusal("b.x", namespace: "a")?.rule == .namespaceAllow)
        #expect(policy.replyRefusal("b.x", namespace: "other") == nil)
        #expect(SubjectPolicy(deny: ["_INBOX.>"]).replyRefusal("_INBOX.x", namespace: "a")?.use == .reply)
        // And the server's prefixes are reserved for every other use.
        #expect(policy.refusal(for: "_R_.x", namespace: "b", use: .publish)?.rule == .reserved)
    }

    @Test func aDefaultListCoversNamespacesWithoutTheirOwn() {
        let policy = SubjectPolicy(namespaces: ["*": ["shared.>"], "a": ["a.>"]])
        #expect(policy.refusal(for: "shared.x", namespace: "new", use: .publish) == nil)
        #expect(policy.refusal(for: "a.x", namespace: "new", use: .publish)?.rule == .namespaceAllow)
        #expect(policy.refusal(for: "a.x", namespace: "a", use: .publish) == nil)
        #expect(policy.refusal(for: "shared.x", namespace: "a", use: .publish)?.rule == .namespaceAllow)
    }

    @Test func denyListRefusesEveryUse() {
        let policy = SubjectPolicy(allowReserved: ["$SRV.>"], deny: ["internal.>", "$SRV.STATS"])
        #expect(rule(policy, "internal.x", use: .request) == .denyTriggerSubjects)
        #expect(rule(policy, "*.x", use: .trigger) == .denyTriggerSubjects)
        #expect(rule(policy, "$SRV.STATS") == .denyTriggerSubjects)
        #expect(rule(policy, "$SRV.PING") == nil)
    }

    @Test func refusalsSayTheRuleAndTheFix() {
        let refusal = SubjectPolicy().refusal(for: "$KV.B.key", namespace: "a", use: .publish)
        #expect(refusal?.description.contains("rule reserved") == true)
        #expect(refusal?.description.contains("subject_policy.allow_reserved") == true)
        let narrowed = SubjectPolicy(namespaces: ["a": ["a.>"]]).refusal(for: "b.x", namespace: "a", use: .trigger)
        #expect(narrowed?.description.contains("trigger subject b.x") == true)
        #expect(narrowed?.description.contains("subject_policy.namespaces.a") == true)
    }

    @Test func configurationIsCheckedAtLoad() throws {
        let good = try NodeConfiguration.parse(
            Data(
                #"{"subject_policy":{"allow_reserved":["$SRV.PING"],"namespaces":{"acme":["acme.>"]}},"sandbox_nats_servers":["nats.internal:4222"]}"#
                    .utf8))
        #expect(good.workloadSubjects.allowReserved == ["$SRV.PING"])
        #expect(good.sandboxNATSServers == ["nats.internal:4222"])
        #expect(throws: NodeConfigurationError.self) {
            try NodeConfiguration.parse(Data(#"{"subject_policy":{"allow_reserved":["orders.>"]}}"#.utf8))
        }
        #expect(throws: NodeConfigurationError.self) {
            try NodeConfiguration.parse(Data(#"{"subject_policy":{"namespaces":{"a":["a.>.b"]}}}"#.utf8))
        }
        #expect(throws: NodeConfigurationError.unknownKey("subject_policy.allow")) {
            try NodeConfiguration.parse(Data(#"{"subject_policy":{"allow":["a"]}}"#.utf8))
        }
        #expect(throws: NodeConfigurationError.self) {
            try NodeConfiguration.parse(Data(#"{"sandbox_nats_servers":["nats://"]}"#.utf8))
        }
    }
}

@Suite struct SandboxServerPolicyTests {
    @Test func onlyTheNodesServersAndTheOperatorsList() {
        var config = NodeConfiguration()
        config.sandboxNATSServers = ["nats.internal:4333"]
        let policy = SandboxServerPolicy(nodeServers: ["nats://127.0.0.1:4222", "tls://[::1]:5222"], config: config)
        #expect(policy.refusal(for: ["NATS_URL": "nats://127.0.0.1:4222"]) == nil)
        #expect(policy.refusal(for: ["NATS_URL": "127.0.0.1:4222, nats://[::1]:5222"]) == nil)
        #expect(policy.refusal(for: ["nex_hostservices_nats_server": "NATS.internal:4333"]) == nil)
        #expect(policy.refusal(for: ["OTHER": "nats://10.0.0.1:4222"]) == nil)
        #expect(policy.refusal(for: ["NATS_URL": " "]) == nil)
        #expect(policy.refusal(for: ["NATS_URL": "nats://127.0.0.1:4222,"])?.message.contains("not a list") == true)
        for foreign in ["nats://127.0.0.1:4223", "169.254.169.254:80", "nats://localhost:4222", "10.1.2.3"] {
            let refusal = policy.refusal(for: ["NATS_URL": foreign])
            #expect(refusal?.message.contains("may not reach") == true, "\(foreign)")
            #expect(refusal?.message.contains("sandbox_nats_servers") == true)
        }
    }

    @Test func serverAddressesNormalize() {
        #expect(
            NATSServerEndpoint("nats://User:pw@HOST.example:4333")
                == NATSServerEndpoint(host: "host.example", port: 4333))
        #expect(NATSServerEndpoint("[::1]") == NATSServerEndpoint(host: "::1", port: 4222))
        #expect(NATSServerEndpoint("tls://h") == NATSServerEndpoint(host: "h", port: 4222))
        #expect(NATSServerEndpoint("") == nil)
        #expect(NATSServerEndpoint.list("a:1,,b") == nil)
    }
}

@Suite struct HostServicesEgressTests {
    @Test func deployNamedServersPassTheEgressPolicy() throws {
        let policy = EgressPolicy.globalOnly.allowing(servers: [NATSServerEndpoint(host: "127.0.0.1", port: 4222)])
        #expect(policy.refusal(natsURLs: "nats://127.0.0.1:4222") == nil)
        #expect(policy.refusal(natsURLs: "nats://127.0.0.1:4223")?.contains("loopback") == true)
        #expect(policy.refusal(natsURLs: "nats://169.254.169.254:4222") != nil)
        #expect(policy.refusal(natsURLs: "nats://[::1]:4222") != nil)
        #expect(policy.refusal(natsURLs: "nats://") != nil)
        // Names are resolved at connect: the dial filter sees each address.
        let filter = policy.natsDialFilter
        #expect(filter(.init(host: "localhost", port: 4223, address: [127, 0, 0, 1])) != nil)
        #expect(filter(.init(host: "127.0.0.1", port: 4222, address: [127, 0, 0, 1])) == nil)
        #expect(filter(.init(host: "public.example", port: 4222, address: [8, 8, 8, 8])) == nil)
        let opened = try EgressPolicy(allowList: "127.0.0.1/32")
        #expect(opened.refusal(natsURLs: "nats://127.0.0.1:4999") == nil)
    }
}
