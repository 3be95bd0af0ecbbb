import Testing

@testable import NATSProtocol

@Suite struct KeepAliveStateMachineTests {
    @Test func closesAfterMaxOutstandingPings() {
        var k = KeepAliveStateMachine(maxOutstanding: 2)
        let r1 = k.timerFired()
        #expect(r1 == .sendPing)
        let r2 = k.timerFired()
        #expect(r2 == .sendPing)
        #expect(k.outstanding == 2)
        let r3 = k.timerFired()
        #expect(r3 == .closeStale)
    }

    @Test func aPongResetsTheCount() {
        var k = KeepAliveStateMachine(maxOutstanding: 2)
        for _ in 0..<10 {
            let r4 = k.timerFired()
            #expect(r4 == .sendPing)
            let r5 = k.timerFired()
            #expect(r5 == .sendPing)
            k.pongReceived()
        }
        #expect(k.outstanding == 0)
    }
}

@Suite struct ServerAddressTests {
    @Test func parsesTheURLForms() throws {
        let a = try #require(ServerAddress(parsing: "nats://127.0.0.1:4333"))
        #expect(a.scheme == "nats" && a.host == "127.0.0.1" && a.port == 4333)
        let b = try #require(ServerAddress(parsing: "tls://derek:s3cr%40t@nats.example.com"))
        #expect(b.requiresTLS && b.host == "nats.example.com" && b.port == 4222)
        #expect(b.user == "derek" && b.password == "s3cr@t")
        #expect(b.description == "tls://derek:***@nats.example.com:4222")
        let c = try #require(ServerAddress(parsing: "localhost:5222"))
        #expect(c.scheme == "nats" && c.host == "localhost" && c.port == 5222)
        let d = try #require(ServerAddress(parsing: "nats://mytoken@[::1]:4222"))
        #expect(d.host == "::1" && d.user == "mytoken" && d.password == nil)
        #expect(d.description == "nats://***@[::1]:4222")
        #expect(ServerAddress(parsing: "host")?.port == 4222)
    }

    @Test(arguments: ["http://x:1", "nats://h:notaport", "nats://h:70000", "ws://a"])
    func rejectsNonNATSURLs(_ s: String) { #expect(ServerAddress(parsing: s) == nil) }
}

@Suite struct ServerPoolTests {
    let a = ServerAddress(host: "a", port: 1)
    let b = ServerAddress(host: "b", port: 2)

    func policy(max: Int? = 3) -> ServerPool.Policy {
        var p = ServerPool.Policy()
        p.reconnectWait = .milliseconds(100)
        p.maxReconnectWait = .milliseconds(350)
        p.jitter = .milliseconds(10)
        p.maxAttemptsPerServer = max
        return p
    }

    @Test func triesEachServerOnceBeforeWaiting() {
        var pool = ServerPool([a, b], policy: policy(), randomize: false)
        let r6 = pool.nextAction(random: 0)
        #expect(r6 == .connect(a))
        pool.attemptFailed(a)
        let r7 = pool.nextAction(random: 0)
        #expect(r7 == .connect(b))
        pool.attemptFailed(b)
        let r8 = pool.nextAction(random: 0)
        #expect(r8 == .wait(.milliseconds(100), then: a))
    }

    @Test func backoffDoublesUpToTheCapPlusJitter() {
        let pool = ServerPool([a], policy: policy(), randomize: false)
        #expect(pool.delay(afterFailures: 1, random: 0) == .milliseconds(100))
        #expect(pool.delay(afterFailures: 2, random: 0) == .milliseconds(200))
        #expect(pool.delay(afterFailures: 3, random: 0.5) == .milliseconds(355))
        #expect(pool.delay(afterFailures: 30, random: 1) == .milliseconds(360))
    }

    @Test func givesUpAfterMaxAttempts() {
        var pool = ServerPool([a], policy: policy(max: 2), randomize: false)
        var actions: [ServerPool.Action] = []
        for _ in 0..<4 {
            let action = pool.nextAction(random: 0)
            actions.append(action)
            pool.attemptFailed(a)
        }
        #expect(actions.last == .giveUp)
        #expect(actions.filter { $0 != .giveUp }.count == 3)
    }

    @Test func unlimitedAttemptsNeverGiveUp() {
        var pool = ServerPool([a], policy: policy(max: nil), randomize: false)
        for _ in 0..<500 {
            let r9 = pool.nextAction(random: 0)
            #expect(r9 != .giveUp)
            pool.attemptFailed(a)
        }
    }

    @Test func theServerJustLostIsTriedLast() {
        var pool = ServerPool([a, b], policy: policy(), randomize: false)
        pool.connected(a)
        let r10 = pool.nextAction(random: 0)
        #expect(r10 == .connect(b))
    }

    @Test func learnsAndForgetsGossipedServers() {
        var pool = ServerPool([a], policy: policy(), randomize: false)
        let current = ServerAddress(scheme: "tls", host: "a", port: 1, user: "u", password: "p")
        let r11 = pool.learn(connectURLs: ["10.0.0.2:4222", "a:1"], current: current)
        #expect(r11)
        #expect(pool.servers.count == 2)
        let learned = pool.servers.first { $0.address.host == "10.0.0.2" }
        #expect(learned?.isImplicit == true && learned?.address.scheme == "tls" && learned?.address.user == "u")
        let r12 = pool.learn(connectURLs: ["10.0.0.2:4222"], current: current)
        #expect(!r12)
        let r13 = pool.learn(connectURLs: [], current: current)
        #expect(r13)
        #expect(pool.servers.map(\.address.host) == ["a"])
    }
}
