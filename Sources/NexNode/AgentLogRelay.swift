import Logging
import Synchronization

/// The log lines functions write, as they arrive on the agents' links (on the node's event loop), handed in
/// order to one task that forwards them to the workloads' log subjects. At most `limit` lines wait; past
/// that, new lines are dropped and counted as failed logs, never buffered without bound.
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

    init(failures: PublishFailures, logger: Logger, limit: Int = 10_000) {
        (lines, continuation) = AsyncStream.makeStream(of: Line.self, bufferingPolicy: .bufferingOldest(limit))
        self.failures = failures
        self.logger = logger
    }

    /// Queues a line; called on the link's event loop, so it never waits.
    func add(agentID: String, level: Int, text: [UInt8]) {
        guard case .dropped = continuation.yield(Line(agentID: agentID, level: level, text: text)) else { return }
        let count = failures.logs.add(1, ordering: .relaxed).newValue
        if count == 1 || count % 1000 == 0 {
            logger.warning(
                "function log lines are arriving faster than they can be forwarded; dropped",
                metadata: ["nex.agent": "\(agentID)", "failed_logs": "\(count)"])
        }
    }

    /// Forwards lines until the task is cancelled (the node stops) or the relay finishes.
    func forward(to manager: WorkloadManager) async {
        for await line in lines {
            await manager.log(agentID: line.agentID, level: line.level, text: line.text)
        }
    }
}
