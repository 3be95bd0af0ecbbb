import Foundation
import NKeys
import NexControlClient
import NexModels
import Testing

@testable import NexNode

/// A deploy's `triggers`: the JSON form (one flat object per entry, unknown keys named) and the checks a node
/// makes before anything is created.
@Suite struct TriggerValidationTests {
    let nodeXkey = NKeyPair.generate(.curve)

    /// `triggers` decoded from `json` (a JSON array).
    func triggers(_ json: String) throws -> [WorkloadTrigger] {
        try JSONDecoder().decode([WorkloadTrigger].self, from: Data(json.utf8))
    }

    /// A v8 deploy with these triggers, checked by a node; nil when accepted.
    func refusal(_ json: String, configure: (inout NodeConfiguration) -> Void = { _ in }) throws -> NexError? {
        var request = try NexControlClient.makeDeployRequest(
            name: "fn", type: "v8", location: WorkloadLocation(bucket: "B", key: "k"),
            hash: String(repeating: "ab", count: 32), issuer: NKeyPair.generate(.account),
            publisher: NKeyPair.generate(.curve), targetNode: "N", targetXkey: nodeXkey.publicKey)
        request.triggers = try triggers(json)
        var config = NodeConfiguration()
        config.workloadTypes = [.v8]
        configure(&config)
        if case .failure(let error) = DeployValidator(config: config, xkey: nodeXkey).validate(
            request, namespace: "default")
        {
            return error
        }
        return nil
    }

    @Test func everyTypeRoundTripsAsOneFlatObject() throws {
        let json = """
            [{"type": "subject", "subject": "orders.new", "queue": "q"},
             {"type": "stream", "stream": "ORDERS", "filter_subject": "orders.>", "durable": "d", "deliver": "new",
              "max_deliver": 5, "backoff": ["1s", "5s"], "ack_wait": "30s", "max_batch": 64, "max_concurrency": 4,
              "max_ack_pending": 1000, "inactive_threshold": "24h", "dead_letter_subject": "dlq.orders"},
             {"type": "kv", "bucket": "settings", "key": "feature.>", "operations": ["put", "delete"]},
             {"type": "object_store", "bucket": "uploads", "operations": ["put"]},
             {"type": "schedule", "cron": "*/10 * * * * *", "timezone": "Europe/Amsterdam", "payload": "tick"}]
            """
        let decoded = try triggers(json)
        #expect(decoded.map(\.type) == ["subject", "stream", "kv", "object_store", "schedule"])
        guard case .stream(let stream) = decoded[1] else {
            Issue.record("not a stream trigger")
            return
        }
        #expect(stream.filterSubject == "orders.>" && stream.delivery.backoff == ["1s", "5s"])
        #expect(stream.delivery.maxBatch == 64 && stream.delivery.deadLetterSubject == "dlq.orders")
        let again = try JSONDecoder().decode([WorkloadTrigger].self, from: JSONEncoder().encode(decoded))
        #expect(again == decoded)
        let flat = try JSONSerialization.jsonObject(with: JSONEncoder().encode(decoded[1])) as? [String: Any]
        #expect(flat?["type"] as? String == "stream" && flat?["max_deliver"] as? Int == 5, "\(flat ?? [:])")
    }

    @Test func unknownTypesAndKeysAreNamed() throws {
        let badType = #expect(throws: DecodingError.self) { try triggers(#"[{"type": "queue", "subject": "a"}]"#) }
        #expect("\(String(describing: badType))".contains("unknown trigger type \"queue\""))
        let badKey = #expect(throws: DecodingError.self) {
            try triggers(#"[{"type": "stream", "stream": "S", "max_delivery": 3}]"#)
        }
        #expect("\(String(describing: badKey))".contains("a stream trigger has no key \"max_delivery\""))
        #expect(throws: DecodingError.self) { try triggers(#"[{"type": "stream"}]"#) }
    }

    @Test func malformedTriggersAreRefusedWithTheFix() throws {
        let cases: [(String, String)] = [
            (#"[{"type": "schedule", "cron": "*/5 * * * *"}]"#, "cron has six fields, seconds first"),
            (#"[{"type": "schedule", "cron": "bad"}]"#, "has 1"),
            (#"[{"type": "schedule", "every": "500ms"}]"#, "at least 1s"),
            (#"[{"type": "schedule", "every": "1s", "timezone": "UTC"}]"#, "timezone goes with cron"),
            (#"[{"type": "schedule"}]"#, "give either every"),
            (
                #"[{"type": "stream", "stream": "S", "max_deliver": 2, "backoff": ["1s", "5s"]}]"#,
                "max_deliver 2 leaves 1"
            ),
            (#"[{"type": "stream", "stream": "S", "backoff": ["soon"]}]"#, "backoff step \"soon\""),
            (#"[{"type": "stream", "stream": "S.x"}]"#, "is not a stream name"),
            (#"[{"type": "stream", "stream": "S", "deliver": "last"}]"#, "deliver is all or new"),
            (#"[{"type": "stream", "stream": "S", "max_batch": 0}]"#, "max_batch is from 1 to 256"),
            (#"[{"type": "stream", "stream": "S", "ack_wait": "10ms"}]"#, "ack_wait is a duration of at least 1s"),
            (#"[{"type": "stream", "stream": "S", "dead_letter_subject": "dlq.*"}]"#, "not a subject to publish to"),
            (#"[{"type": "kv", "bucket": "b", "operations": ["update"]}]"#, "operation \"update\""),
            (#"[{"type": "subject", "subject": "foo..bar"}]"#, "is not a subject to subscribe to"),
        ]
        for (json, says) in cases {
            let error = try refusal(json)
            #expect(error?.code == .invalidRequest, "\(json): \(String(describing: error))")
            #expect(error?.message.contains(says) == true, "\(json): \(String(describing: error))")
            #expect(error?.message.hasPrefix("triggers[0]") == true, "\(json): \(String(describing: error))")
        }
    }

    @Test func triggerSubjectsPassTheSubjectPolicy() throws {
        // A `$`-subject filter, another tenant's bucket, a node-reserved dead-letter subject: the policy refuses.
        for json in [
            #"[{"type": "stream", "stream": "S", "filter_subject": "$JS.API.>"}]"#,
            #"[{"type": "kv", "bucket": "secrets"}]"#,
            #"[{"type": "object_store", "bucket": "uploads"}]"#,
            #"[{"type": "stream", "stream": "S", "dead_letter_subject": "$NEX.events.x"}]"#,
            #"[{"type": "subject", "subject": "$SYS.>"}]"#,
        ] {
            let error = try refusal(json)
            #expect(error?.code == .unauthorized, "\(json): \(String(describing: error))")
        }
    }

    @Test func wellFormedTriggersAreAccepted() throws {
        #expect(try refusal(#"[{"type": "subject", "subject": "orders.new", "queue": "workers"}]"#) == nil)
        #expect(try refusal(#"[{"type": "stream", "stream": "ORDERS", "backoff": ["1s"]}]"#) == nil)
        #expect(try refusal(#"[{"type": "schedule", "every": "1s", "payload": "tick"}]"#) == nil)
        #expect(try refusal(#"[{"type": "schedule", "cron": "0 */5 * * * *", "timezone": "Europe/Amsterdam"}]"#) == nil)
    }
}
