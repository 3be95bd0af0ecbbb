import NATS
import NUID

extension JetStreamContext {
    /// Creates a consumer on `stream` (durable when `config.durableName` is set, otherwise ephemeral).
    public func createConsumer(stream: String, config: ConsumerConfig) async throws -> Consumer {
        try await putConsumer(stream: stream, config: config, action: "create")
    }

    /// Updates an existing consumer.
    public func updateConsumer(stream: String, config: ConsumerConfig) async throws -> Consumer {
        try await putConsumer(stream: stream, config: config, action: "update")
    }

    /// Creates the consumer or updates it when it exists.
    public func createOrUpdateConsumer(stream: String, config: ConsumerConfig) async throws -> Consumer {
        try await putConsumer(stream: stream, config: config, action: "")
    }

    private func putConsumer(stream: String, config: ConsumerConfig, action: String) async throws -> Consumer {
        try Self.checkName(stream)
        var config = config
        if config.name == nil { config.name = config.durableName ?? NUID.next() }
        let name = config.name!
        try Self.checkName(name)
        struct Request: Encodable {
            var stream_name: String
            var config: ConsumerConfig
            var action: String
        }
        let info: ConsumerInfo = try await api(
            "CONSUMER.CREATE.\(stream).\(name)", Request(stream_name: stream, config: config, action: action))
        return Consumer(js: self, stream: stream, name: info.name, cachedInfo: info)
    }

    /// An existing consumer.
    public func consumer(stream: String, name: String) async throws -> Consumer {
        let info = try await consumerInfo(stream: stream, name: name)
        return Consumer(js: self, stream: stream, name: name, cachedInfo: info)
    }

    /// A consumer's configuration and state.
    public func consumerInfo(stream: String, name: String) async throws -> ConsumerInfo {
        try Self.checkName(stream)
        try Self.checkName(name)
        return try await api("CONSUMER.INFO.\(stream).\(name)")
    }

    /// Deletes a consumer.
    public func deleteConsumer(stream: String, name: String) async throws {
        try Self.checkName(stream)
        try Self.checkName(name)
        let _: Success = try await api("CONSUMER.DELETE.\(stream).\(name)")
    }

    /// Names of the consumers of `stream`.
    public func consumerNames(stream: String) async throws -> [String] {
        try Self.checkName(stream)
        struct Request: Encodable { var offset: Int }
        struct Page: Decodable {
            var consumers: [String]?
            var total: Int
        }
        var names: [String] = []
        while true {
            let page: Page = try await api("CONSUMER.NAMES.\(stream)", Request(offset: names.count))
            names += page.consumers ?? []
            if names.count >= page.total || (page.consumers ?? []).isEmpty { return names }
        }
    }
}

/// A pull consumer: fetch batches, or iterate ``messages(batch:expires:)`` continuously.
public struct Consumer: Sendable {
    let js: JetStreamContext
    /// The stream it reads.
    public let stream: String
    /// The consumer's name.
    public let name: String
    /// The info returned when the consumer was created or looked up.
    public let cachedInfo: ConsumerInfo

    /// Fresh configuration and state.
    public func info() async throws -> ConsumerInfo {
        try await js.consumerInfo(stream: stream, name: name)
    }

    /// Fetches up to `batch` messages, waiting at most `expires` for them (or not at all with `noWait`).
    /// Fewer (even none) come back when the consumer has no more within that time.
    public func fetch(_ batch: Int, expires: Duration = .seconds(5), noWait: Bool = false) async throws
        -> [JetStreamMessage]
    {
        guard batch > 0 else { return [] }
        let client = js.client
        let inbox = "\(client.configuration.inboxPrefix).\(NUID.next())"
        let sub = try await client.subscribe(to: inbox)
        defer { sub.unsubscribeNow() }
        struct Pull: Encodable {
            var batch: Int
            var expires: Int64?
            var no_wait: Bool?
        }
        let pull = Pull(
            batch: batch, expires: noWait ? nil : Nanos.encode(expires), no_wait: noWait ? true : nil)
        try await client.publish(
            Array(try JetStreamContext.encoder.encode(pull)), to: "\(js.apiPrefix).CONSUMER.MSG.NEXT.\(stream).\(name)",
            replyTo: inbox)
        var messages: [JetStreamMessage] = []
        let deadline = ContinuousClock.now + (noWait ? js.timeout : expires + .seconds(1))
        while messages.count < batch {
            // Past the deadline the wait is zero but what already arrived is still taken: a message the server
            // delivered and this fetch dropped would wait out its ack wait before anyone saw it again.
            let left = max(deadline - ContinuousClock.now, .zero)
            let next: NATSMessage?
            do {
                next = try await sub.nextMessage(timeout: left)
            } catch let e as NATSError where e.code == .timeout {
                break
            }
            guard let m = next else { break }
            switch m.status {
            case 404?, 408?:  // no messages now / the pull request expired
                return messages
            case 409?:
                let reason = m.headers?.statusDescription ?? "conflict"
                if messages.isEmpty, !reason.lowercased().contains("leadership") {
                    throw JetStreamError(code: 409, errorCode: 0, description: reason)
                }
                return messages
            case 100?:  // heartbeat or flow control
                if let reply = m.replyTo { try await client.publish([UInt8](), to: reply) }
            case let status?:
                throw JetStreamError(code: status, errorCode: 0, description: m.headers?.statusDescription ?? "")
            case nil:
                if let jm = JetStreamMessage(m, client: client) { messages.append(jm) }
            }
        }
        return messages
    }

    /// Messages as they arrive, pulled in batches of `batch` (each pull waits up to `expires`). Transient
    /// failures (a server restart, a lost pull) are retried; a deleted consumer or stream ends it with an error.
    public func messages(batch: Int = 100, expires: Duration = .seconds(30)) -> Messages {
        Messages(consumer: self, batch: batch, expires: expires)
    }

    /// The continuous stream of a consumer's messages.
    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = JetStreamMessage
        let consumer: Consumer
        let batch: Int
        let expires: Duration

        public func makeAsyncIterator() -> Iterator { Iterator(consumer: consumer, batch: batch, expires: expires) }

        public struct Iterator: AsyncIteratorProtocol {
            let consumer: Consumer
            let batch: Int
            let expires: Duration
            var session: PullSession?

            /// Whether the server says the consumer does not exist. A slow or busy server (a timeout) is not
            /// a deleted consumer: the pulls go on.
            static func isGone(_ consumer: Consumer) async -> Bool {
                do {
                    _ = try await consumer.info()
                    return false
                } catch let e as JetStreamError {
                    return e.code == 404
                } catch {
                    return false
                }
            }

            public mutating func next() async throws -> JetStreamMessage? {
                var failures = 0
                while true {
                    if Task.isCancelled {
                        session?.close()
                        return nil
                    }
                    do {
                        if session == nil {
                            session = try await PullSession(consumer: consumer, batch: batch, expires: expires)
                        }
                        return try await session!.next()
                    } catch let e as JetStreamError where e.code == 404 || e.code == 409 {
                        session?.close()
                        throw e
                    } catch is CancellationError {
                        session?.close()
                        return nil
                    } catch {
                        // Disconnected: wait (with backoff) and pull again on a fresh inbox.
                        failures += 1
                        session?.close()
                        session = nil
                        try? await Task.sleep(for: retryBackoff(failures: failures))  // cancelled: checked above
                        if failures > 3, consumer.js.client.isConnected, await Self.isGone(consumer) {
                            throw JetStreamError.client("consumer \(consumer.name) is gone: \(error)", code: 404)
                        }
                    }
                }
            }
        }
    }
}
