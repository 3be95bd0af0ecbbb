import NIOCore
import NIOEmbedded
import Testing

@testable import NATS

@Suite(.timeLimit(.minutes(1))) struct ClientFakeServerTests {
    /// Connects a client to the fake server and returns both sides.
    func connected(
        _ server: FakeServer, _ configure: (inout NATSClient.Configuration) -> Void = { _ in }
    ) async throws -> (NATSClient, FakeServer.Connection) {
        let client = server.makeClient(configure)
        async let connecting: Void = client.connect()
        let conn = try await server.nextConnection()
        let hello = try await conn.handshake()
        #expect(hello.hasPrefix("CONNECT {"))
        try await connecting
        return (client, conn)
    }

    @Test func handshakeSendsConnectWithOurOptions() async throws {
        let server = FakeServer()
        let client = server.makeClient {
            $0.name = "unit"
            $0.echo = false
        }
        async let connecting: Void = client.connect()
        let conn = try await server.nextConnection()
        let hello = try await conn.handshake()
        try await connecting
        #expect(hello.contains(#""name":"unit""#))
        #expect(hello.contains(#""echo":false"#))
        #expect(hello.contains(#""headers":true"#))
        #expect(hello.contains(#""no_responders":true"#))
        #expect(hello.contains(#""lang":"swift""#))
        #expect(client.isConnected)
        await client.close()
    }

    @Test func errDuringHandshakeIsATypedError() async throws {
        let server = FakeServer()
        let client = server.makeClient()
        let connecting = Task { try await client.connect() }
        let conn = try await server.nextConnection()
        try await conn.send("INFO \(FakeServer.info)\r\n")
        try await conn.expect("PING\r\n")
        try await conn.send("-ERR 'Authorization Violation'\r\n")
        let error = await #expect(throws: NATSError.self) { try await connecting.value }
        #expect(error?.code == .authorizationViolation)
    }

    @Test func subscribeAndReceiveFromTheFakeServer() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let sub = try await client.subscribe(to: "foo.*", queue: "q")
        try await conn.expect("SUB foo.* q 1\r\n")
        try await conn.send("MSG foo.a 1 5\r\nhello\r\nHMSG foo.b 1 r.1 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n")
        let a = try #require(try await sub.nextMessage(timeout: .seconds(5)))
        #expect(a.subject == "foo.a" && a.string == "hello")
        let b = try #require(try await sub.nextMessage(timeout: .seconds(5)))
        #expect(b.replyTo == "r.1" && b.headers?["A"] == "b" && b.string == "hi")
        await client.close()
    }

    @Test func readsSplitAtEveryByteBoundaryDeliverEveryMessage() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let sub = try await client.subscribe(to: "s.>")
        try await conn.expect("SUB s.> 1\r\n")
        let stream = Array(
            ("MSG s.a 1 3\r\none\r\nPING\r\nHMSG s.b 1 r 12 15\r\nNATS/1.0\r\n\r\ntwo\r\n"
                + "MSG s.c 1 5\r\nthree\r\n").utf8)
        for split in 1..<stream.count {
            try await conn.channel.writeInbound(ByteBuffer(bytes: stream[..<split]))
            try await conn.channel.writeInbound(ByteBuffer(bytes: stream[split...]))
            let got = try await sub.collect(3)
            #expect(got.map(\.string) == ["one", "two", "three"], "split at \(split)")
            #expect(got.map(\.subject) == ["s.a", "s.b", "s.c"])
            try await conn.expect("PONG\r\n")
        }
        await client.close()
    }

    @Test func serverPingIsAnsweredWithPong() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        try await conn.send("PING\r\n")
        try await conn.expect("PONG\r\n")
        await client.close()
    }

    @Test func keepAlivePingsAndStaleDetectionOnAManualClock() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server) {
            $0.pingInterval = .seconds(10)
            $0.maxPingsOutstanding = 2
            $0.allowReconnect = false
        }
        let events = client.events
        // Nothing happens before the interval.
        await server.loop.advanceTime(by: .seconds(9))
        #expect(try await conn.channel.readOutbound(as: ByteBuffer.self) == nil)
        await server.loop.advanceTime(by: .seconds(1))
        try await conn.expect("PING\r\n")
        // A PONG resets the count: two more intervals only send PINGs.
        try await conn.send("PONG\r\n")
        await server.loop.advanceTime(by: .seconds(10))
        try await conn.expect("PING\r\n")
        await server.loop.advanceTime(by: .seconds(10))
        try await conn.expect("PING\r\n")
        #expect(client.isConnected)
        // The third unanswered interval: stale.
        await server.loop.advanceTime(by: .seconds(10))
        var sawStale = false
        for await e in events {
            if case .error(let err) = e, err.code == .staleConnection { sawStale = true }
            if e == .closed { break }
        }
        #expect(sawStale)
        #expect(!client.isConnected)
    }

    @Test func requestTimesOutOnTheManualClock() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let request = Task { try await client.request("q", to: "svc", timeout: .seconds(3)) }
        try await conn.expect("PUB svc ")
        await server.loop.advanceTime(by: .seconds(2))
        #expect(client.isConnected)
        await server.loop.advanceTime(by: .seconds(1))
        let error = await #expect(throws: NATSError.self) { try await request.value }
        #expect(error?.code == .timeout)
        await client.close()
    }

    @Test func requestIsResolvedByItsReplyAndNoRespondersByStatus() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let first = Task { try await client.request("q", to: "svc") }
        let sub = try await conn.expect("\r\n", timeout: .seconds(5))  // SUB <inbox>.* 1
        #expect(sub.hasPrefix("SUB _INBOX.") && sub.hasSuffix(".* 1\r\n"))
        let pub = try await conn.expect("q\r\n")
        let reply = String(pub.split(separator: " ")[2])
        try await conn.send("MSG \(reply) 1 6\r\nanswer\r\n")
        #expect(try await first.value.string == "answer")

        let second = Task { try await client.request("q", to: "nobody") }
        let pub2 = try await conn.expect("q\r\n")
        let reply2 = String(pub2.split(separator: " ")[2])
        try await conn.send("HMSG \(reply2) 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
        let error = await #expect(throws: NATSError.self) { try await second.value }
        #expect(error?.code == .noResponders)
        await client.close()
    }

    @Test func garbageFromTheServerIsAProtocolErrorAndTheClientReconnects() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let events = client.events
        _ = try await client.subscribe(to: "keep")
        try await conn.expect("SUB keep 1\r\n")
        try await conn.send("THIS IS NOT NATS\r\n")
        await server.loop.run()  // the close the handler queued on the manual loop
        var reason = ""
        for await e in events {
            if case .disconnected(let r) = e {
                reason = r
                break
            }
        }
        #expect(reason.contains("protocolError"))
        // Reconnects to the (fake) server and restores the subscription.
        let second = try await server.nextConnection()
        _ = try await second.handshake()
        try await second.expect("SUB keep 1\r\n")
        await client.close()
    }

    @Test func closeMidFrameLosesOnlyThePartialMessage() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let sub = try await client.subscribe(to: "data")
        try await conn.expect("SUB data 1\r\n")
        try await conn.send("MSG data 1 4\r\nfull\r\nMSG data 1 100\r\nonly-part")
        try await conn.channel.close()
        let second = try await server.nextConnection()
        _ = try await second.handshake()
        try await second.expect("SUB data 1\r\n")
        try await second.send("MSG data 1 5\r\nagain\r\n")
        let got = try await sub.collect(2)
        #expect(got.map(\.string) == ["full", "again"])
        await client.close()
    }

    @Test func flushWaitsForThePong() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let flushed = Task { try await client.flush(timeout: .seconds(30)) }
        try await conn.expect("PING\r\n")
        try await conn.send("PONG\r\n")
        try await flushed.value
        // Without a PONG the flush times out on the manual clock.
        let stuck = Task { try await client.flush(timeout: .seconds(1)) }
        try await conn.expect("PING\r\n")
        await server.loop.advanceTime(by: .seconds(1))
        let error = await #expect(throws: NATSError.self) { try await stuck.value }
        #expect(error?.code == .timeout)
        await client.close()
    }

    @Test func infoUpdatesAreEvents() async throws {
        let server = FakeServer()
        let (client, conn) = try await connected(server)
        let events = client.events
        try await conn.send(
            #"INFO {"server_id":"FAKE","version":"2.15.1","max_payload":1048576,"headers":true,"connect_urls":["127.0.0.9:4222"],"ldm":true}"#
                + "\r\n")
        var changed = false
        var lameDuck = false
        for await e in events {
            if case .serversChanged(let s) = e { changed = s.contains { $0.contains("127.0.0.9:4222") } }
            if case .lameDuckMode = e { lameDuck = true }
            if changed && lameDuck { break }
        }
        #expect(client.knownServers.count == 2)
        await client.close()
    }
}

extension NATSSubscription {
    func collect(_ count: Int) async throws -> [NATSMessage] {
        var out: [NATSMessage] = []
        while out.count < count, let m = try await nextMessage(timeout: .seconds(5)) { out.append(m) }
        return out
    }
}
