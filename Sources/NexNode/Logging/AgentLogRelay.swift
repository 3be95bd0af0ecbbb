import DequeModule
import Logging
import NexModels
import Synchronization

/// The log lines workloads write, as they arrive on the agents' links (on the node's event loop), forwarded
/// to the workloads' log subjects by one task. Each agent has a queue of its own and the task takes one line
/// from each in turn, so a noisy workload delays only its own lines. A queue holds at most `limit` lines and
/// `byteLimit` bytes, and all of them together at most `totalByteLimit`; past that, new lines are dropped and
/// counted as failed logs, never buffered without bound.
///
/// A workload's exit takes the same queue, behind its last lines (and is never dropped): the node ends the
/// workload only after those lines went out.
final class AgentLogRelay: Sendable {
    struct Line: Sendable {
        var agentID: String
        var level: Int
        var text: [UInt8]
        /// Set on the entry that reports the workload's exit (no text).
        var exit: Exit?
    }

    /// How a workload ended, as its agent reported it.
    struct Exit: Sendable {
        var code: Int
        var message: String
    }

    private struct State {
        var queues: [String: Deque<Line>] = [:]
        var bytes: [String: Int] = [:]
        var totalBytes = 0
        /// Agents with lines waiting, in the order their turns come.
        var turns = Deque<String>()
    }

    private let state = Mutex(State())
    /// Wakes the forwarding task (one pending wake-up is enough: it takes every line there is).
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let failures: PublishFailures
    private let logger: Logger
    private let limit: Int
    private let byteLimit: Int
    private let totalByteLimit: Int

    init(
        failures: PublishFailures, logger: Logger, limit: Int = 2_000, byteLimit: Int = 2 << 20,
        totalByteLimit: Int = 16 << 20
    ) {
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.failures = failures
        self.logger = logger
        self.limit = limit
        self.byteLimit = byteLimit
        self.totalByteLimit = totalByteLimit
    }

    /// Queues a line; called on the link's event loop, so it never waits.
    func add(agentID: String, level: Int, text: [UInt8]) {
        let queued = state.withLock { s -> Bool in
            let bytes = s.bytes[agentID, default: 0]
            guard (s.queues[agentID]?.count ?? 0) < limit, bytes + text.count <= byteLimit,
                s.totalBytes + text.count <= totalByteLimit
            else { return false }
            if s.queues[agentID] == nil { s.turns.append(agentID) }
            s.queues[agentID, default: []].append(Line(agentID: agentID, level: level, text: text, exit: nil))
            s.bytes[agentID] = bytes + text.count
            s.totalBytes += text.count
            return true
        }
        if queued {
            wake.yield()
            return
        }
        let (count, worthALine) = failures.logLost()
        if worthALine {
            logger.warning(
                "a function writes log lines faster than they can be forwarded; its new lines are dropped",
                metadata: ["nex.agent": "\(agentID)", "failed_logs": "\(count)"])
        }
    }

    /// Queues a workload's exit behind its lines; never refused.
    func exited(agentID: String, code: Int, message: String) {
        state.withLock { s in
            if s.queues[agentID] == nil { s.turns.append(agentID) }
            let exit = Exit(code: code, message: message)
            s.queues[agentID, default: []].append(Line(agentID: agentID, level: 0, text: [], exit: exit))
        }
        wake.yield()
    }

    /// Forwards lines, and exits to the manager, until the task is cancelled (the node stops).
    func forward(to manager: WorkloadManager) async {
        await forward { line in
            guard let exit = line.exit else {
                await manager.log(agentID: line.agentID, level: line.level, text: line.text)
                return
            }
            // Queued for the workload's supervisor, which ends the run in its own task.
            await manager.exited(
                agentID: line.agentID, WorkloadExited(workloadID: "", code: exit.code, message: exit.message))
        }
    }

    /// Hands each line to `deliver`, one at a time, until the task is cancelled.
    func forward(_ deliver: (Line) async -> Void) async {
        for await _ in wakeups {
            while let line = next() { await deliver(line) }
        }
    }

    /// The next agent's oldest line; that agent's turn comes again after every other agent's.
    private func next() -> Line? {
        state.withLock { s -> Line? in
            guard let agent = s.turns.popFirst(), let line = s.queues[agent]?.popFirst() else { return nil }
            s.totalBytes -= line.text.count
            if s.queues[agent]?.isEmpty == true {
                s.queues[agent] = nil
                s.bytes[agent] = nil
            } else {
                s.bytes[agent, default: 0] -= line.text.count
                s.turns.append(agent)
            }
            return line
        }
    }
}
