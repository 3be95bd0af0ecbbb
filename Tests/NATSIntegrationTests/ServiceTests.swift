import Foundation
import NATS
import NATSServices
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct ServiceTests {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "boom" }
    }

    func startEcho(_ client: NATSClient) async throws -> NATSService {
        var config = NATSService.Config(name: "echo", version: "1.0.0", description: "echoes")
        config.metadata = ["team": "nex"]
        let service = try await NATSService.start(client: client, config: config)
        try await service.addEndpoint(name: "echo", subject: "svc.echo") { req in
            try await req.respond(req.message.payload)
        }
        try await service.addEndpoint(name: "fail", subject: "svc.fail", metadata: ["kind": "test"]) { _ in
            throw Failure()
        }
        try await service.addEndpoint(name: "refuse", subject: "svc.refuse") { req in
            try await req.respondError(code: 400, description: "bad input")
        }
        return service
    }

    @Test func endpointsAnswerAndErrorsCarryHeaders() async throws {
        try await withServerAndClient { _, client in
            _ = try await startEcho(client)
            #expect(try await client.request("test", to: "svc.echo").string == "test")
            let failed = try await client.request("x", to: "svc.fail")
            #expect(failed.headers?["Nats-Service-Error-Code"] == "500")
            #expect(failed.headers?["Nats-Service-Error"] == "boom")
            let refused = try await client.request("x", to: "svc.refuse")
            #expect(refused.headers?["Nats-Service-Error-Code"] == "400")
        }
    }

    @Test func discoveryAndStatsInTheStandardJSON() async throws {
        try await withServerAndClient { _, client in
            let service = try await startEcho(client)
            _ = try await client.request("a", to: "svc.echo")
            _ = try await client.request("b", to: "svc.echo")
            _ = try await client.request("c", to: "svc.fail")
            func json(_ subject: String) async throws -> [String: Any] {
                let reply = try await client.request([UInt8](), to: subject)
                return try #require(try JSONSerialization.jsonObject(with: Data(reply.bytes)) as? [String: Any])
            }
            let pings = try await client.requestMany([UInt8](), to: "$SRV.PING", stall: .milliseconds(200))
            #expect(pings.count == 1)
            let ping = try await json("$SRV.PING.echo.\(service.id)")
            #expect(ping["type"] as? String == "io.nats.micro.v1.ping_response")
            #expect(ping["id"] as? String == service.id && ping["version"] as? String == "1.0.0")
            let info = try await json("$SRV.INFO.echo")
            #expect(info["type"] as? String == "io.nats.micro.v1.info_response")
            #expect((info["metadata"] as? [String: String])?["team"] == "nex")
            let endpoints = try #require(info["endpoints"] as? [[String: Any]])
            #expect(endpoints.map { $0["subject"] as? String } == ["svc.echo", "svc.fail", "svc.refuse"])
            #expect(endpoints.allSatisfy { $0["queue_group"] as? String == "q" })
            let stats = try await json("$SRV.STATS.echo")
            #expect(stats["type"] as? String == "io.nats.micro.v1.stats_response")
            let byName = Dictionary(
                uniqueKeysWithValues: try #require(stats["endpoints"] as? [[String: Any]]).map {
                    ($0["name"] as! String, $0)
                })
            #expect(byName["echo"]?["num_requests"] as? Int == 2 && byName["echo"]?["num_errors"] as? Int == 0)
            #expect(byName["fail"]?["num_errors"] as? Int == 1 && byName["fail"]?["last_error"] as? String == "boom")
            #expect((byName["echo"]?["processing_time"] as? Int ?? 0) > 0)
            await service.stop()
            let gone = await #expect(throws: NATSError.self) { try await client.request("x", to: "svc.echo") }
            #expect(gone?.code == .noResponders)
        }
    }

    @Test func instancesShareTheLoadAndAnswerDiscoveryEach() async throws {
        try await withServerAndClient { server, client in
            try await withClient([server.url]) { other in
                _ = try await startEcho(client)
                _ = try await startEcho(other)
                for i in 0..<20 { #expect(try await client.request("\(i)", to: "svc.echo").string == "\(i)") }
                let pings = try await client.requestMany([UInt8](), to: "$SRV.PING.echo", stall: .milliseconds(300))
                #expect(pings.count == 2)
            }
        }
    }

    @Test func invalidConfigIsRefused() async throws {
        try await withServerAndClient { _, client in
            await #expect(throws: NATSError.self) {
                try await NATSService.start(client: client, config: .init(name: "bad name", version: "1.0.0"))
            }
            await #expect(throws: NATSError.self) {
                try await NATSService.start(client: client, config: .init(name: "ok", version: "one"))
            }
        }
    }

    @Test func interopWithNatsPyMicro() async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "python venv missing")
        let python = try #require(TestEnvironment.python, "python venv missing: run scripts/setup.sh")
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/micro_peer.py").path
        try await withServerAndClient { server, client in
            // nats-py parses our discovery responses with its own micro types.
            let service = try await startEcho(client)
            _ = try await client.request("x", to: "svc.echo")
            let out = try await TestEnvironment.run(python, [script, server.url, "discover", "echo"])
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            #expect((parsed["ping"] as? [String: Any])?["id"] as? String == service.id)
            let infoEndpoints = ((parsed["info"] as? [String: Any])?["endpoints"] as? [[String: Any]]) ?? []
            #expect(infoEndpoints.count == 3)
            let statsEndpoints = ((parsed["stats"] as? [String: Any])?["endpoints"] as? [[String: Any]]) ?? []
            #expect(statsEndpoints.first { $0["name"] as? String == "echo" }?["num_requests"] as? Int == 1)
            // We discover and call a nats-py micro service.
            let peer = try await PeerProcess.start(python, [script, server.url, "serve", "pyecho"])
            try await peer.waitForLines(1)
            #expect(try await client.request("hi", to: "py.echo").string == "py:hi")
            let info = try await client.request([UInt8](), to: "$SRV.INFO.pyecho")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(info.bytes)) as? [String: Any])
            #expect(json["version"] as? String == "1.2.3")
            #expect(((json["endpoints"] as? [[String: Any]])?.first?["subject"] as? String) == "py.echo")
        }
    }
}
