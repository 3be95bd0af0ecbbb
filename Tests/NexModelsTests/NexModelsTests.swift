import Foundation
import NexModels
import Testing

func golden(_ name: String) throws -> Data {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Golden"))
    return try Data(contentsOf: url)
}

func jsonObject(_ data: Data) throws -> NSDictionary {
    try #require(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
}

@Suite struct EnvelopeTests {
    @Test func decodesAPingReply() throws {
        let env = try JSONDecoder().decode(Envelope<PingResponse>.self, from: golden("ping_response"))
        #expect(env.type == "io.nats.nex.v1.ping_response" && !env.isFailure)
        let ping = try #require(env.data)
        #expect(ping.nodeID.hasPrefix("N") && ping.targetXkey.hasPrefix("X"))
        #expect(ping.tags["nex.unsafe"] == "true" && ping.uptime == "1h2m3s" && ping.runningMachines == 0)
    }

    @Test func failureHasEmptyStringDataBothWays() throws {
        let env = try JSONDecoder().decode(Envelope<RunResponse>.self, from: golden("run_failure"))
        #expect(env.isFailure && env.data == nil && env.error == "invalid workload name")
        let ours = try JSONEncoder().encode(Envelope<RunResponse>(kind: ReplyKind.run, error: "invalid workload name"))
        #expect(try jsonObject(ours) == jsonObject(golden("run_failure")))
        // data omitted or null is accepted too.
        for json in [#"{"type":"io.nats.nex.v1.run_response","error":"x"}"#, #"{"type":"t","data":null,"error":"x"}"#] {
            let e = try JSONDecoder().decode(Envelope<RunResponse>.self, from: Data(json.utf8))
            #expect(e.isFailure && e.data == nil)
        }
    }

    @Test func successCarriesNoErrorKey() throws {
        let ok = Envelope(kind: ReplyKind.lameDuck, data: LameDuckResponse(nodeID: "N1", success: true))
        let object = try jsonObject(JSONEncoder().encode(ok))
        #expect(object["error"] == nil && object["type"] as? String == "io.nats.nex.v1.lameduck_response")
        #expect((object["data"] as? NSDictionary)?["node_id"] as? String == "N1")
    }
}

@Suite struct DeployRequestTests {
    @Test func decodesWhatAGoClientSends() throws {
        let request = try JSONDecoder().decode(DeployRequest.self, from: golden("deploy_request_go"))
        #expect(request.location == WorkloadLocation(bucket: "NEXCLIFILES", key: "echoservice"))
        #expect(request.hash == nil && request.id == nil && request.argv == nil)
        #expect(request.type == "native" && request.workloadName == "echoservice")
        #expect(request.senderPublicKey.hasPrefix("X") && request.environment?.isEmpty == false)
        #expect(request.triggerSubjects == [])
    }

    @Test func locationEncodesAsTheURLAndParsesBack() throws {
        var request = try JSONDecoder().decode(DeployRequest.self, from: golden("deploy_request_go"))
        request.triggerSubjects = ["calc.*"]
        let data = try JSONEncoder().encode(request)
        #expect(try jsonObject(data)["location"] as? String == "nats://NEXCLIFILES/echoservice")
        #expect(try JSONDecoder().decode(DeployRequest.self, from: data) == request)
    }

    @Test(arguments: ["http://x/y", "nats://bucket", "nats:///key", "plain"])
    func badLocationsAreErrors(_ url: String) {
        #expect(WorkloadLocation(url: url) == nil)
        let json =
            #"{"location":"\#(url)","sender_public_key":"X","target_node":"N","workload_name":"w","workload_jwt":"j","type":"native"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(DeployRequest.self, from: Data(json.utf8)) }
    }
}

@Suite struct EventTests {
    @Test func workloadEventRoundTrips() throws {
        let event = try JSONDecoder().decode(CloudEvent<WorkloadEvent>.self, from: golden("workload_deployed_event"))
        #expect(event.specVersion == "1.0" && event.type == NexEventType.workloadDeployed)
        #expect(event.data.workloadName == "echoservice" && event.data.totalBytes == 1_048_576)
        let again = try JSONEncoder().encode(event)
        #expect(try jsonObject(again) == jsonObject(golden("workload_deployed_event")))
    }

    @Test(arguments: [0, 1_700_000_000.5, 1_795_000_000.999, 951_782_400.0421, 4_102_444_799.9999])
    func timesAreRFC3339InUTCWithMilliseconds(_ seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let event = CloudEvent(
            id: "1", source: "N1", type: NexEventType.heartbeat, time: date, data: [String: String]())
        // The reference rounds to the nearest millisecond; ours truncates (never a time in the future).
        let truncated = Date(timeIntervalSince1970: (seconds * 1000).rounded(.down) / 1000 + 0.0000001)
        #expect(event.time == reference.string(from: truncated))
    }

    @Test func newEventsCarryTheCloudEventsFields() throws {
        let e = CloudEvent(
            id: "1", source: "N1", type: NexEventType.heartbeat, data: NodeStoppedEvent(id: "N1", graceful: true))
        let o = try jsonObject(JSONEncoder().encode(e))
        #expect(o["specversion"] as? String == "1.0" && o["datacontenttype"] as? String == "application/json")
        #expect((o["time"] as? String)?.hasSuffix("Z") == true)
    }
}

@Suite struct SubjectTests {
    @Test func subjectsOfTheContract() {
        #expect(NexSubjects.deploy(namespace: "default", node: "N1") == "$NEX.DEPLOY.default.N1")
        #expect(NexSubjects.workloadPing(namespace: "ns") == "$NEX.WPING.ns")
        #expect(NexSubjects.workloadPing(namespace: "ns", workload: "w") == "$NEX.WPING.ns.w")
        #expect(
            NexSubjects.event(namespace: "system", type: NexEventType.nodeStarted) == "$NEX.events.system.node_started")
        #expect(
            NexSubjects.logs(namespace: "d", node: "N", workloadName: "echo", workloadID: "id")
                == "$NEX.logs.d.N.echo.id")
        #expect(NexSubjects.logsFilter(workloadName: "echo") == "$NEX.logs.*.*.echo.*")
    }
}

@Suite struct GoDurationTests {
    @Test(arguments: [
        (Int64(0), "0s"), (1_500_000_000, "1.5s"), (3_723_000_000_000, "1h2m3s"), (150_000_000, "150ms"),
        (1_500, "1.5µs"), (61_000_000_000, "1m1s"), (3_600_000_000_000, "1h0m0s"), (999, "999ns"),
        (-2_000_000_000, "-2s"), (90_061_500_000_000, "25h1m1.5s"),
    ])
    func formatsLikeGo(_ ns: Int64, _ text: String) {
        #expect(GoDuration.format(nanoseconds: ns) == text)
    }
}

@Suite struct EventIDTests {
    @Test func idsAreDistinctVersion4UUIDs() throws {
        let ids = (0..<1000).map { _ in EventID.random() }
        #expect(Set(ids).count == ids.count)
        for id in ids {
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuidString == id)
            let bytes = uuid.uuid
            #expect(bytes.6 >> 4 == 4, "version 4")
            #expect(bytes.8 >> 6 == 0b10, "RFC 4122 variant")
        }
    }
}
