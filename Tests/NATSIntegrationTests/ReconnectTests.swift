import Foundation
import NATS
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct ReconnectTests {
    @Test func reconnectsAfterTheServerIsKilledAndRestarted() async throws {
        let server = try await NATSServer.start()
        var restarted: NATSServer?
        defer {
            server.stop()
            restarted?.stop()
        }
        try await withClient([server.url], configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
            let events = EventRecorder(client)
            let sub = try await client.subscribe(to: "survive")
            try await client.flush()
            try await client.publish("before", to: "survive")
            #expect(try await sub.collect(1).first?.string == "before")

            server.kill()
            try await events.waitFor("disconnected") { if case .disconnected = $0 { true } else { false } }
            #expect(!client.isConnected)
            // Published while disconnected: buffered, sent after the reconnect.
            try await client.publish("buffered", to: "survive")

            restarted = try await server.restart()
            try await events.waitFor("reconnected") { if case .reconnected = $0 { true } else { false } }
            #expect(client.statistics.reconnects == 1)
            #expect(try await sub.collect(1).first?.string == "buffered")
            try await client.publish("after", to: "survive")
            #expect(try await sub.collect(1).first?.string == "after")
            // Request/reply works over the same (resubscribed) inbox.
            try await client.subscribe(to: "svc") { m in try await m.respond(m.bytes, using: client) }
            try await client.flush()
            #expect(try await client.request("r", to: "svc").string == "r")
        }
    }

    @Test func retryOnFailedConnectWaitsForALateServer() async throws {
        let port = try TestEnvironment.freePort()
        var config = testConfig(["nats://127.0.0.1:\(port)"])
        config.retryOnFailedConnect = true
        config.reconnect.reconnectWait = .milliseconds(50)
        config.reconnect.maxAttemptsPerServer = nil
        let client = NATSClient(configuration: config)
        let connecting = Task { try await client.connect() }
        try await Task.sleep(for: .milliseconds(300))
        #expect(!client.isConnected)
        var options = NATSServer.Options()
        options.port = port
        let server = try await NATSServer.start(options)
        defer { server.stop() }
        try await connecting.value
        #expect(client.isConnected)
        await client.close()
        // A closed client says so instead of connecting again.
        let error = await #expect(throws: NATSError.self) { try await client.connect() }
        #expect(error?.code == .connectionClosed)
    }

    @Test func reconnectBufferIsBounded() async throws {
        let server = try await NATSServer.start()
        defer { server.stop() }
        try await withClient(
            [server.url],
            configure: {
                $0.reconnectBufferSize = 1024
                $0.reconnect.maxAttemptsPerServer = nil
            }
        ) {
            client in
            let events = EventRecorder(client)
            server.kill()
            try await events.waitFor("disconnected") { if case .disconnected = $0 { true } else { false } }
            try await client.publish([UInt8](repeating: 0, count: 500), to: "x")
            let error = await #expect(throws: NATSError.self) {
                try await client.publish([UInt8](repeating: 0, count: 600), to: "x")
            }
            #expect(error?.code == .reconnectBufferExceeded)
        }
    }

    @Test func givesUpAfterMaxAttemptsAndCloses() async throws {
        let server = try await NATSServer.start()
        defer { server.stop() }
        try await withClient([server.url], configure: { $0.reconnect.maxAttemptsPerServer = 2 }) { client in
            let events = EventRecorder(client)
            let sub = try await client.subscribe(to: "x")
            server.kill()
            try await events.waitFor("closed") { $0 == .closed }
            #expect(!client.isConnected)
            var ended = true
            for try await _ in sub { ended = false }
            #expect(ended)
            let error = await #expect(throws: NATSError.self) { try await client.publish("x", to: "x") }
            #expect(error?.code == .connectionClosed)
        }
    }

    @Test func staleConnectionIsDetectedByPings() async throws {
        // A "server" that accepts, sends INFO, answers the handshake PING, then goes silent.
        let server = try await SilentServer.start()
        defer { server.stop() }
        var config = testConfig(["nats://127.0.0.1:\(server.port)"])
        config.pingInterval = .milliseconds(100)
        config.maxPingsOutstanding = 2
        config.allowReconnect = false
        let client = NATSClient(configuration: config)
        let events = EventRecorder(client)
        try await client.connect()
        try await events.waitFor("stale connection error") {
            if case .error(let e) = $0 { return e.code == .staleConnection }
            return false
        }
        try await events.waitFor("closed") { $0 == .closed }
        #expect(!client.isConnected)
    }

    @Test func failsOverInAClusterWhenTheConnectedServerDies() async throws {
        let cluster = try await NATSCluster.start(size: 3)
        defer { cluster.stop() }
        try await withClient([cluster.urls[0]], configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
            let events = EventRecorder(client)
            // The client learns the other members from the server's connect_urls.
            try await eventually("learned the cluster") { client.knownServers.count == 3 }
            try await withClient([cluster.urls[2]]) { other in
                let sub = try await client.subscribe(to: "cluster.msg")
                try await client.flush()
                try await eventually("subscription propagated") {
                    try await other.publish("one", to: "cluster.msg")
                    return sub.pendingMessages > 0
                }
                _ = try await sub.collect(sub.pendingMessages)

                cluster.servers[0].kill()
                try await events.waitFor("reconnected to a surviving member") {
                    if case .reconnected(let s) = $0 { return !s.hasSuffix(":\(cluster.servers[0].port)") }
                    return false
                }
                try await eventually("messages flow again via the new server") {
                    try await other.publish("two", to: "cluster.msg")
                    return sub.pendingMessages > 0
                }
            }
        }
    }

    @Test func lameDuckModeIsReported() async throws {
        let cluster = try await NATSCluster.start(
            size: 2, config: "lame_duck_duration: 30s\nlame_duck_grace_period: 1s")
        defer { cluster.stop() }
        try await withClient([cluster.urls[0]], configure: { $0.reconnect.maxAttemptsPerServer = nil }) { client in
            let events = EventRecorder(client)
            let pid = try #require(cluster.servers[0].processID)
            try await TestEnvironment.run(try TestEnvironment.natsServerBinary(), ["--signal", "ldm=\(pid)"])
            try await events.waitFor("lame duck event") { if case .lameDuckMode = $0 { true } else { false } }
            try await events.waitFor("moved to the other server", timeout: .seconds(20)) {
                if case .reconnected(let s) = $0 { return s.hasSuffix(":\(cluster.servers[1].port)") }
                return false
            }
        }
    }
}
