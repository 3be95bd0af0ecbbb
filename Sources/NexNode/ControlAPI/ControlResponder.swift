import Logging
import NATS
import Synchronization

/// Answers the control API's subscriptions concurrently: every request runs in a child task of one task this
/// responder owns, so a slow deploy holds up neither PING nor INFO nor another deploy. At most
/// ``maxInFlight`` requests of one subject run at once; the next waits for a slot (NATS buffers meanwhile).
final class ControlResponder: Sendable {
    /// A request's answer; nil sends none (an auction this node does not match).
    typealias Handler = @Sendable (NATSMessage) async throws -> [UInt8]?

    static let maxInFlight = 32

    private let subscriptions: [NATSSubscription]
    private let serving: Task<Void, Never>

    /// Subscribes to every route and starts answering; the subscriptions are flushed before this returns.
    init(client: NATSClient, routes: [(subject: String, handler: Handler)], logger: Logger) async throws {
        var subscribed: [(NATSSubscription, Handler)] = []
        do {
            for route in routes { subscribed.append((try await client.subscribe(to: route.subject), route.handler)) }
            try await client.flush()
        } catch {
            for (sub, _) in subscribed { try? await sub.unsubscribe() }  // unwinding a failed start
            throw error
        }
        subscriptions = subscribed.map(\.0)
        let routes = subscribed
        serving = Task {
            await withDiscardingTaskGroup { group in
                for (sub, handler) in routes {
                    group.addTask { await Self.serve(sub, handler, client: client, logger: logger) }
                }
            }
        }
    }

    private static func serve(
        _ sub: NATSSubscription, _ handler: @escaping Handler, client: NATSClient, logger: Logger
    ) async {
        await withTaskGroup(of: Void.self) { requests in
            var started = 0
            do {
                for try await message in sub {
                    if started >= maxInFlight {
                        await requests.next()
                        started -= 1
                    }
                    started += 1
                    requests.addTask { await answer(message, handler, client: client, logger: logger) }
                }
            } catch {
                logger.error(
                    "control subscription ended", metadata: ["subject": "\(sub.subject)", "error": "\(error)"])
            }
        }
    }

    private static func answer(_ message: NATSMessage, _ handler: Handler, client: NATSClient, logger: Logger) async {
        guard let reply = message.replyTo else { return }
        do {
            guard let body = try await handler(message) else { return }
            try await client.publish(body, to: reply)
        } catch {
            logger.error("control request failed", metadata: ["subject": "\(message.subject)", "error": "\(error)"])
        }
    }

    /// Takes no more requests (those buffered are still answered).
    func stopTakingRequests() async {
        for sub in subscriptions {
            do { try await sub.unsubscribe() } catch {
                // A closed connection has no subscriptions left to end; iteration has ended with it.
            }
        }
    }

    /// Lets the requests in flight finish for up to `grace`, then cancels what remains and waits for it.
    /// Call after ``stopTakingRequests()`` and after the work they wait for (agents, workloads) is shut down.
    func finish(grace: Duration = .seconds(5)) async {
        let serving = self.serving
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await serving.value }
            group.addTask { try? await Task.sleep(for: grace) }  // cancelled once serving ends first
            await group.next()
            serving.cancel()
            group.cancelAll()
        }
    }
}
