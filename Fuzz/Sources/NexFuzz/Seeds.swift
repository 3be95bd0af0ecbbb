import Foundation
import NIOCore
import NKeys
import NexAgentLink
import NexControlClient
import NexModels

/// The seed corpus: well-formed inputs for every target, so fuzzing starts past the first checks. Written by
/// `NEX_FUZZ_WRITE_SEEDS=DIR` (scripts/fuzz.sh --seeds) into `DIR/<target>/`, and committed.
enum Seeds {
    static func write(to directory: String) {
        for target in FuzzTarget.allCases {
            let folder = directory + "/" + target.rawValue
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (index, seed) in seeds(for: target).enumerated() {
                FileManager.default.createFile(atPath: "\(folder)/seed-\(index)", contents: Data(seed))
            }
        }
    }

    static func seeds(for target: FuzzTarget) -> [[UInt8]] {
        switch target {
        case .protocolParser:
            let stream =
                #"INFO {"server_id":"S","version":"2.11.0","max_payload":1048576,"headers":true,"proto":1}"#
                + "\r\nPING\r\nPONG\r\n+OK\r\nMSG a.b 1 5\r\nhello\r\nMSG a.b 1 _INBOX.x 0\r\n\r\n"
                + "HMSG a 2 r 22 27\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n-ERR 'Authorization Violation'\r\n"
            return [1, 7, 64, 255].map { [UInt8($0)] + Array(stream.utf8) }
        case .headers:
            return [
                "NATS/1.0\r\nA: b\r\nC: d\r\nA: e\r\n\r\n", "NATS/1.0 503\r\n\r\n",
                "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 5\r\n\r\n",
            ].map { Array($0.utf8) }
        case .serverInfo:
            return [
                #"{"server_id":"NABC","server_name":"n1","version":"2.11.0","go":"go1.22","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"proto":1,"client_id":5,"auth_required":true,"tls_required":false,"nonce":"abc","connect_urls":["127.0.0.1:4222","[::1]:4223"],"ldm":false,"jetstream":true}"#
            ].map { Array($0.utf8) }
        case .connectInfo:
            return [
                #"{"verbose":false,"pedantic":false,"tls_required":false,"name":"x","lang":"swift","version":"0.1","protocol":1,"echo":true,"headers":true,"no_responders":true,"jwt":"e30","sig":"c2ln","nkey":"UABC","user":"u","pass":"p","auth_token":"t"}"#
            ].map { Array($0.utf8) }
        case .controlRequests:
            return controlSeeds()
        case .agentLink:
            let frames: [LinkFrame] = [
                .trigger(id: 1, subject: "fn.echo", payload: Array("hello".utf8)),
                .trigger(
                    id: 3, subject: "fn.t", payload: [],
                    traceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                .trigger(id: 4, subject: "orders.new", payload: [7], context: Array(#"{"delivered":1}"#.utf8)),
                .result(id: 1, ok: true, elapsedNanos: 12_345, body: Array("hello".utf8)),
                .result(id: 2, ok: false, elapsedNanos: 0, body: []),
                .log(level: 8, text: Array("oops".utf8)),
                .hello(AgentHandshake(id: "a1", version: "0.1.0", pid: 42, startupMillis: 1.5, protocolVersion: 2)),
                .welcome(AgentResponse(ok: true)),
                .deploy(
                    id: 2,
                    AgentDeployRequest(
                        workloadID: "w", workloadName: "echo", namespace: "default", type: "v8", argv: [],
                        environment: ["K": "V"], essential: false, artifactPath: "/workload", totalBytes: 9,
                        triggerSubjects: ["fn.echo"], limits: FunctionLimits(), maxConcurrency: 1)),
                .stop(id: 3),
                .heartbeat(id: 4),
                .reply(id: 4, AgentResponse(ok: true, message: "w")),
                .hostCall(id: 1, .init(service: "kv", method: "put", arguments: Array(#"["k", "v"]"#.utf8))),
                .hostAnswer(id: 1, ok: false, body: Array("kv.put: refused".utf8)),
                .exited(code: 1, message: "exit status 1"),
            ]
            return [frames.flatMap { $0.encoded() }, frames[0].encoded()]
        case .jwt:
            let claims = JWTClaims.generic(
                subject: "workload-id", issuer: Keys.issuer.publicKey, issuedAt: 1_700_000_000)
            return [Array(((try? NATSJWT.encode(claims, signedBy: Keys.issuer)) ?? "").utf8)]
        case .xkv1:
            let sealed =
                (try? Keys.sender.seal(
                    Array(#"{"NATS_URL":"nats://127.0.0.1:4222"}"#.utf8), to: Keys.recipient.publicKey)) ?? []
            return [sealed]
        }
    }

    private static func controlSeeds() -> [[UInt8]] {
        var out = [
            #"{"os":"linux","arch":"amd64","agent_type":["v8"],"tags":{"a":"b"},"sandboxed":true}"#,
            #"{"node_id":"N","workload_id":"w","workload_jwt":"e30.e30.sig","target_xkey":"X"}"#,
        ].map { Array($0.utf8) }
        guard let location = WorkloadLocation(url: "nats://NEXOBJ/echo"),
            let request = try? NexControlClient.makeDeployRequest(
                name: "echo", type: "v8", location: location, hash: String(repeating: "ab", count: 32),
                environment: ["GREETING": "hello"], issuer: Keys.issuer, publisher: Keys.sender,
                targetNode: Keys.node.publicKey, targetXkey: Keys.recipient.publicKey, triggerSubjects: ["fn.echo"]),
            let encoded = try? JSONEncoder().encode(request)
        else { return out }
        out.append(Array(encoded))
        return out
    }
}
