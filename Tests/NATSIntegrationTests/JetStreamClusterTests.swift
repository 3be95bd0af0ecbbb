import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(3))) struct JetStreamClusterTests {
    /// Retries while the cluster elects its JetStream leaders (503 / "temporarily unavailable", or no peers
    /// placeable yet).
    func whenReady<T>(_ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do { return try await body() } catch let e as JetStreamError
                where e.code == 503 || e.code == 0 || e.description.contains("no suitable peers")
            {
                guard ContinuousClock.now < deadline else { throw e }
                try await Task.sleep(for: .milliseconds(250))
            } catch let e as NATSError where e.code == .timeout {
                guard ContinuousClock.now < deadline else { throw e }
            }
        }
    }

    @Test func replicatedStreamAndBucketSurviveANodeLoss() async throws {
        let cluster = try await NATSCluster.start(size: 3, jetStream: true)
        defer { cluster.stop() }
        try await withClient(cluster.urls, configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
            let js = JetStreamContext(client: client, timeout: .seconds(10))
            var config = StreamConfig(name: "R3", subjects: ["r3.>"])
            config.replicas = 3
            let info = try await whenReady { try await js.createStream(config) }
            #expect(info.config.replicas == 3)
            var kvConfig = KeyValueConfig(bucket: "replicated", history: 2)
            kvConfig.replicas = 3
            let kv = try await whenReady { try await js.createKeyValue(kvConfig) }
            for i in 0..<10 { _ = try await whenReady { try await js.publish("\(i)", to: "r3.events") } }
            try await kv.put("config", "v1")

            // Lose the server the client is on: it reconnects, and two of three replicas keep quorum.
            let connectedPort = client.connectedServer.flatMap { $0.split(separator: ":").last.map(String.init) }
            let victim = cluster.servers.first { String($0.port) == connectedPort } ?? cluster.servers[0]
            victim.kill()
            try await eventually("reconnected to a survivor", timeout: .seconds(20)) {
                client.isConnected && client.connectedServer?.hasSuffix(":\(victim.port)") == false
            }
            let ack = try await whenReady { try await js.publish("after", to: "r3.events") }
            #expect(ack.sequence == 11)
            // Direct gets go to any replica: one still catching up after the leader change may not have v1
            // yet (it answers "no value"), so the value is read until a replica that has it answers.
            try await eventually("v1 read from a replica", timeout: .seconds(30)) {
                try await whenReady { try await kv.get("config") }?.string == "v1"
            }
            try await whenReady { try await kv.put("config", "v2") }
            #expect(try await whenReady { try await kv.history("config") }.map(\.string) == ["v1", "v2"])
            let consumer = try await whenReady {
                try await js.createConsumer(stream: "R3", config: ConsumerConfig(ackPolicy: .none))
            }
            #expect(try await consumer.fetch(11, expires: .seconds(5)).count == 11)
        }
    }
}
