import Foundation
import NATS
import NATSTestSupport
import Synchronization
import Testing

/// A client configuration for tests: the product's 2 s connect timeout is too short when the suite starts
/// dozens of servers and peers at once on two cores.
func testConfig(_ servers: [String]) -> NATSClient.Configuration {
    var config = NATSClient.Configuration(servers: servers)
    config.connectTimeout = .seconds(10)
    return config
}

/// Connects a client to `server` with test-friendly defaults, then runs `body`; always closes the client.
func withClient<T>(
    _ urls: [String], configure: (inout NATSClient.Configuration) -> Void = { _ in },
    _ body: (NATSClient) async throws -> T
) async throws -> T {
    var config = testConfig(urls)
    config.randomizeServers = false
    config.reconnect.reconnectWait = .milliseconds(50)
    config.reconnect.jitter = .milliseconds(10)
    config.requestTimeout = .seconds(5)
    configure(&config)
    let client = NATSClient(configuration: config)
    try await client.connect()
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}

/// A fresh server and a connected client.
func withServerAndClient<T>(
    _ options: NATSServer.Options = .init(), configure: (inout NATSClient.Configuration) -> Void = { _ in },
    _ body: (NATSServer, NATSClient) async throws -> T
) async throws -> T {
    try await NATSServer.with(options) { server in
        try await withClient([server.url], configure: configure) { client in try await body(server, client) }
    }
}

/// Waits until `condition` holds, polling; fails the test after `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting for: \(what)")
    throw TestEnvironment.Failure("timed out waiting for: \(what)")
}

/// Collects events in the background so a test can wait for one.
final class EventRecorder: Sendable {
    private let seen = Locked<[NATSEvent]>([])
    private let task: Task<Void, Never>

    init(_ client: NATSClient) {
        let stream = client.events
        let seen = self.seen
        task = Task {
            for await e in stream { seen.withLock { $0.append(e) } }
        }
    }

    deinit { task.cancel() }

    var events: [NATSEvent] { seen.value }

    func waitFor(_ what: String, timeout: Duration = .seconds(15), _ match: @escaping (NATSEvent) -> Bool) async throws
    {
        try await eventually(what, timeout: timeout) { self.events.contains(where: match) }
    }
}

/// A value behind a lock that closures can share.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

extension NATSSubscription {
    /// Receives exactly `count` messages or fails after `timeout`.
    func collect(_ count: Int, timeout: Duration = .seconds(5)) async throws -> [NATSMessage] {
        var out: [NATSMessage] = []
        while out.count < count {
            guard let m = try await nextMessage(timeout: timeout) else { break }
            out.append(m)
        }
        return out
    }
}

/// How long a test's control client waits for a node's answer. These tests check what a node answers, not how
/// fast: a start-up burst on two cores has held a node's reply past the CLI's 5 s, while a node that never
/// answers (a blocked request handler) still fails the test.
let nodeAnswerTimeout: Duration = .seconds(20)
