import NATSProtocol
import Synchronization

/// Something that happened to the connection, delivered through ``NATSClient/events``.
public enum NATSEvent: Sendable, Equatable {
    /// Connected for the first time, to this server.
    case connected(server: String)
    /// The connection was lost; reconnecting follows unless it is disabled.
    case disconnected(reason: String)
    /// Connected again (subscriptions restored, buffered publishes sent).
    case reconnected(server: String)
    /// The server entered lame duck mode and will close soon; the client will move to another server.
    case lameDuckMode(server: String)
    /// The known servers changed after the cluster gossiped `connect_urls`.
    case serversChanged([String])
    /// A subscription dropped messages because its buffer was full.
    case slowConsumer(subject: String, sid: UInt64, dropped: Int)
    /// An asynchronous error (permission violation, protocol error, server -ERR).
    case error(NATSError)
    /// The client closed for good.
    case closed
}

/// Fans events out to every listener; each listener has its own bounded buffer (newest kept).
/// A stream requested after the client closed yields `.closed` and ends, so no listener waits forever.
final class EventBroadcaster: Sendable {
    private struct Listeners {
        var next = 0
        var all: [Int: AsyncStream<NATSEvent>.Continuation] = [:]
        var finished = false
    }

    private let listeners = Mutex(Listeners())

    func stream(bufferSize: Int = 256) -> AsyncStream<NATSEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: NATSEvent.self, bufferingPolicy: .bufferingNewest(bufferSize))
        let id = listeners.withLock { l -> Int? in
            guard !l.finished else { return nil }
            let id = l.next
            l.next += 1
            l.all[id] = continuation
            return id
        }
        guard let id else {
            continuation.yield(.closed)
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLock { $0.all.removeValue(forKey: id) }
        }
        return stream
    }

    func emit(_ event: NATSEvent) {
        let targets = listeners.withLock { Array($0.all.values) }
        for t in targets { t.yield(event) }
    }

    func finish() {
        let targets = listeners.withLock { l in
            defer {
                l.all.removeAll()
                l.finished = true
            }
            return Array(l.all.values)
        }
        for t in targets { t.finish() }
    }
}
