import Foundation
public import NATS
public import ServiceLifecycle
import Synchronization

/// `--logger nats`: ships the node's log lines to `$NEX.logs.system.<node>.stdout`, and warnings and worse
/// to `….stderr`, as Nex does.
///
/// Logging must not wait for the network, so ``write(_:isError:)`` only queues; the service publishes. Lines
/// logged before it runs wait in the queue (up to `capacity`; beyond that they are counted and dropped).
/// Graceful shutdown ships what is queued, then ends.
public final class NATSLogShipper: NodeLogSink, Service {
    struct Line {
        var text: String
        var isError: Bool
    }
    private let queue: (stream: AsyncStream<Line>, continuation: AsyncStream<Line>.Continuation)
    private let target = Mutex<(client: NATSClient, node: String)?>(nil)
    private let dropped = Atomic<Int>(0)

    public init(capacity: Int = 10_000) {
        queue = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(capacity))
    }

    public func write(_ line: String, isError: Bool) {
        switch queue.continuation.yield(Line(text: line, isError: isError)) {
        case .dropped, .terminated: dropped.add(1, ordering: .relaxed)
        case .enqueued: break
        @unknown default: break
        }
    }

    /// Where to ship: `client`, for the node `nodeID`. Call before ``run()``.
    public func ship(through client: NATSClient, nodeID: String) {
        target.withLock { $0 = (client, nodeID) }
    }

    /// The subject of a node's output or error lines.
    public static func subject(node: String, isError: Bool) -> String {
        "$NEX.logs.system.\(node).\(isError ? "stderr" : "stdout")"
    }

    public func run() async throws {
        guard let (client, node) = target.withLock({ $0 }) else {
            throw NATSLogShipperError(description: "the NATS logger was started before it knew its connection")
        }
        let output = Self.subject(node: node, isError: false)
        let errors = Self.subject(node: node, isError: true)
        var failed = 0
        await withGracefulShutdownHandler {
            // Ends when the queue is finished and empty: everything queued until then is shipped.
            for await line in queue.stream {
                do { try await client.publish(Array(line.text.utf8), to: line.isError ? errors : output) } catch {
                    failed += 1
                }
            }
        } onGracefulShutdown: {
            self.queue.continuation.finish()
        }
        let lost = failed + dropped.load(ordering: .relaxed)
        if lost > 0 {
            // The logger itself cannot carry this: say it where an operator looks first.
            FileDescriptorWriter.writeAll(
                Array("nex: \(lost) log lines did not reach NATS (\(failed) failed to publish)\n".utf8),
                to: STDERR_FILENO)
        }
    }
}

/// Why the NATS logger could not run.
public struct NATSLogShipperError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
