import Foundation
import NATS
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(1))) struct EchoServiceExampleTests {
    @Test func answersOnSvcEchoAndShowsUpInDiscovery() async throws {
        try await withServerAndClient { server, client in
            let service = try await PeerProcess.start(
                TestEnvironment.builtProduct("echoservice"), [], environment: ["NATS_URL": server.url])
            let line = try await service.waitForLines(1)
            #expect(line[0].contains("answering on svc.echo"))
            #expect(try await client.request("test", to: "svc.echo").string == "test")
            let info = try await client.request([UInt8](), to: "$SRV.INFO.echo")
            let json = try JSONSerialization.jsonObject(with: Data(info.bytes)) as? [String: Any]
            #expect(json?["name"] as? String == "echo")
            #expect(((json?["endpoints"] as? [[String: Any]])?.first?["subject"] as? String) == "svc.echo")
            #expect(try await service.terminate() == 0)
            let gone = await #expect(throws: NATSError.self) { try await client.request("x", to: "svc.echo") }
            #expect(gone?.code == .noResponders)
        }
    }
}
