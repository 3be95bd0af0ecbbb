import Foundation
import Logging
import NATSTestSupport
import ServiceLifecycle
import Testing

@testable import NATS

@Suite(.timeLimit(.minutes(1))) struct LifecycleTests {
    @Test func runsAsAServiceAndDrainsOnGracefulShutdown() async throws {
        try await NATSServer.with { server in
            let client = NATSClient(configuration: testConfig([server.url]))
            let group = ServiceGroup(
                services: [client], gracefulShutdownSignals: [],
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            let running = Task { try await group.run() }
            try await eventually("connected by run()") { client.isConnected }
            let sub = try await client.subscribe(to: "svc.life")
            let consumer = Task {
                var got: [String] = []
                for try await m in sub { got.append(m.string) }
                return got
            }
            try await client.publish("before shutdown", to: "svc.life")
            let start = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await running.value
            #expect(!client.isConnected)
            #expect(ContinuousClock.now - start < .seconds(20))  // well under the 30 s drain timeout
            // Drain let the in-flight message arrive and be consumed before the subscription ended.
            #expect(try await consumer.value == ["before shutdown"])
        }
    }

    @Test func runOwnsTheSupervisionReconnectsAndClosesWhenCancelled() async throws {
        try await NATSServer.with { server in
            let client = NATSClient(configuration: testConfig([server.url]))
            let events = EventRecorder(client)
            let running = Task { try await client.run() }
            try await eventually("connected by run()") { client.isConnected }
            server.kill()
            // run() supervises in its own task: it notices the loss and reconnects.
            try await events.waitFor("disconnected") { if case .disconnected = $0 { true } else { false } }
            let restarted = try await server.restart()
            defer { restarted.stop() }
            try await events.waitFor("reconnected") {
                if case .reconnected = $0 { return true }
                return false
            }
            running.cancel()
            try await running.value
            #expect(!client.isConnected)
            await #expect(throws: NATSError.self) { try await client.publish("late", to: "x") }
        }
    }

    @Test func closeWhileReconnectingEndsRunAtOnce() async throws {
        try await NATSServer.with { server in
            var config = testConfig([server.url])
            config.reconnect.reconnectWait = .seconds(50)  // longer than the test may take
            config.reconnect.jitter = .zero
            let client = NATSClient(configuration: config)
            let events = EventRecorder(client)
            let running = Task { try await client.run() }
            try await eventually("connected by run()") { client.isConnected }
            server.kill()
            try await events.waitFor("disconnected") { if case .disconnected = $0 { true } else { false } }
            // The supervision waits out a backoff; close() cancels it instead of leaving run() to wait.
            let start = ContinuousClock.now
            await client.close()
            try await running.value
            #expect(ContinuousClock.now - start < .seconds(20))
        }
    }

    @Test func aClientLetGoOfWithoutClosingClosesItsConnection() async throws {
        try await NATSServer.with { server in
            var client: NATSClient? = NATSClient(configuration: testConfig([server.url]))
            try await client?.connect()
            let events = try #require(client?.events)
            weak let watched = client
            client = nil
            // Neither the supervisor nor the connection keeps it alive: its deinit closed it (nothing else
            // could have: the events end with .closed).
            var seen: [NATSEvent] = []
            for await e in events { seen.append(e) }
            #expect(seen == [.closed])
            #expect(watched == nil)
        }
    }

    @Test func scopedHelpersEndWhatTheyOpened() async throws {
        try await NATSServer.with { server in
            let kept = try await NATSClient.withConnection(configuration: testConfig([server.url])) { nc in
                let (sub, first) = try await nc.withSubscription(to: "scoped.>") { sub in
                    try await nc.publish("one", to: "scoped.a")
                    return (sub, try await sub.nextMessage(timeout: .seconds(5)))
                }
                #expect(first?.string == "one")
                // Once the body returned, the subscription ended: iteration finishes and nothing more arrives.
                try await nc.publish("two", to: "scoped.b")
                try await nc.flush()
                var after: [String] = []
                for try await m in sub { after.append(m.string) }
                #expect(after.isEmpty)
                return nc
            }
            #expect(!kept.isConnected)
        }
    }

    @Test func eventsRequestedAfterCloseEnd() async throws {
        try await withServerAndClient { _, client in
            await client.close()
            var seen: [NATSEvent] = []
            for await e in client.events { seen.append(e) }
            #expect(seen == [.closed])
        }
    }

    @Test func handlerErrorsAreEventsAndTheSubscriptionGoesOn() async throws {
        struct Boom: Error {}
        try await withServerAndClient { _, client in
            let events = EventRecorder(client)
            let count = Locked(0)
            try await client.subscribe(to: "flaky") { _ in
                let n = count.withLock { c -> Int in
                    c += 1
                    return c
                }
                if n == 1 { throw Boom() }
            }
            try await client.flush()
            try await client.publish("1", to: "flaky")
            try await client.publish("2", to: "flaky")
            try await eventually("both handled") { count.value == 2 }
            try await events.waitFor("handlerFailed") {
                if case .error(let e) = $0 { return e.code == .handlerFailed && e.subject == "flaky" }
                return false
            }
        }
    }
}

/// How the servers follow `NATS_URL`: read through the function the initializer uses, so no test changes the
/// process's environment (where any client made meanwhile would read it and dial what it names).
@Suite struct EnvironmentTests {
    @Test func configurationFollowsNATS_URL() throws {
        let named = NATSClient.Configuration.servers([], environment: "nats://127.0.0.2:4999,tls://localhost:5000")
        #expect(named == ["nats://127.0.0.2:4999", "tls://localhost:5000"])
        #expect(
            NATSClient.Configuration.servers(["nats://given:1"], environment: "nats://127.0.0.2:1") == [
                "nats://given:1"
            ])
        #expect(testConfig(["nats://given:1"]).servers == ["nats://given:1"])
    }

    @Test func defaultsToLocalhostWithoutNATS_URL() {
        #expect(NATSClient.Configuration.servers([], environment: nil) == ["nats://127.0.0.1:4222"])
        #expect(NATSClient.Configuration.servers([], environment: "") == ["nats://127.0.0.1:4222"])
    }
}
