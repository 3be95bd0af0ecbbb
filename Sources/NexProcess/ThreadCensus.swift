import CNexSpawn
import Foundation

/// The threads of this process by name (Linux `/proc/self/task/*/comm`): how a node proves at exit that none
/// of the threads it started (all named `nex-…`) outlived it.
public enum ThreadCensus {
    /// The process-wide thread that starts and reaps children: made once, kept for the life of the process.
    static let permanent: Set<String> = ["nex-children"]

    /// Every thread's name (15 characters at most, as the kernel keeps them).
    public static func names() -> [String] {
        let tasks = "/proc/self/task"
        // No /proc (not Linux): no threads to name.
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
        return ids.compactMap { id in
            // A thread that ended since the listing: skipped.
            (try? String(contentsOfFile: "\(tasks)/\(id)/comm", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines)
        }
    }

    /// Threads started for workloads, agents and sandboxes that are still running.
    public static func nexThreads() -> [String] {
        names().filter { $0.hasPrefix("nex-") && !permanent.contains($0) }.sorted()
    }

    /// Waits up to `timeout` for ``nexThreads()`` to be empty (a thread that has handed over its last result
    /// still takes a moment to return) and gives those that remain.
    public static func nexThreadsLeft(after timeout: Duration) async -> [String] {
        let deadline = ContinuousClock.now + timeout
        var left = nexThreads()
        while !left.isEmpty, ContinuousClock.now < deadline {
            // Cancelled: stop waiting (the loop would spin until the deadline) and give what remains.
            do { try await Task.sleep(for: .milliseconds(10)) } catch { return left }
            left = nexThreads()
        }
        return left
    }
}

/// Starts a thread whose kernel name (what ``ThreadCensus`` and `top -H` see) is `name`, cut to 15 bytes.
/// Foundation's `Thread.name` does not reach the kernel on Linux.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        setCurrentThreadName(name)
        body()
    }
    thread.name = name
    thread.start()
}

/// Names the calling thread for the kernel (15 bytes at most).
public func setCurrentThreadName(_ name: String) {
    nex_set_thread_name(name)
}
