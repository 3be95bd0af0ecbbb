import Logging
import Synchronization

/// The log lines functions write, as they arrive on the agents' links (on the node's event loop), handed in
/// order to one task that forwards them to the workloads' log subjects. At most `limit` lines and
/// `byteLimit` bytes wait; past that, new lines are dropped and counted as failed logs, never buffered
/// without bound.
final class AgentLogRelay: Sendable {
    struct Line: Sendable {
        var agentID: String
        var level: Int
        var text: [UInt8]
    }

    private let lines: AsyncStream<Line>
    private let continuation: AsyncStream<Line>.Continuation
    private let failures: PublishFailures
    private let logger: Logger
    private let byteLimit: Int
    /// Bytes of text waiting in `lines`.
    private let waitingBytes = Atomic<Int>(0)

    init(failures: PublishFailures, logger: Logger, limit: Int = 10_000, byteLimit: Int = 16 << 20) {
        (lines, continuation) = AsyncStream.makeStream(of: Line.self, bufferingPolicy: .bufferingOldest(limit))
        self.failures = failures
        self.logger = logger
        self.byteLimit = byteLimit
    }

    /// Queues a line; called on the link's event loop, so it never waits.
    func add(agentID: String, level: Int, text: [UInt8]) {
        let waiting = waitingBytes.add(text.count, ordering: .relaxed).newValue
        if waiting <= byteLimit,
            case .enqueued = continuation.yield(Line(agentID: agentID, level: level, text: text))
        {
            return
        }
        waitingBytes.subtract(text.count, ordering: .relaxed)
        let (count, worthALine) = failures.logLost()
        if worthALine {
            logger.warning(
                "function log lines are arriving faster than they can be forwarded; dropped",
                metadata: ["nex.agent": "\(agentID)", "failed_logs": "\(count)"])
        }
    }

    /// Forwards lines until the task is cancelled (the node stops) or the relay finishes.
    func forward(to manager: WorkloadManager) async {
        for await line in lines {
            waitingBytes.subtract(line.text.count, ordering: .relaxed)
            await manager.log(agentID: line.agentID, level: line.level, text: line.text)
        }
    }
}
