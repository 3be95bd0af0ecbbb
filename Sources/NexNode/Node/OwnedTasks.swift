import Synchronization

/// Background work with an owner: every task it starts is kept until it ends, can be cancelled on its own,
/// and ``shutdown()`` cancels all of them and waits until each has returned. Nothing starts after shutdown.
final class OwnedTasks: Sendable {
    /// Names one task, to cancel it before it ends.
    struct Handle: Hashable, Sendable { fileprivate let id: Int }

    private struct State {
        var next = 0
        var running: [Int: Task<Void, Never>] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    /// Tasks started and not yet ended.
    var count: Int { state.withLock { $0.running.count } }

    /// Starts `work` as a task of this owner, on `executor` when given (an event loop: no thread hop for
    /// work that answers there); nil after ``shutdown()``.
    @discardableResult
    func spawn(on executor: (any TaskExecutor)? = nil, _ work: @escaping @Sendable () async -> Void) -> Handle? {
        state.withLock { s -> Handle? in
            guard !s.closed else { return nil }
            let id = s.next
            s.next += 1
            // Registered under the lock that the task's own removal takes: an instant task cannot end first.
            s.running[id] = Task(executorPreference: executor) {
                await work()
                self.ended(id)
            }
            return Handle(id: id)
        }
    }

    /// Cancels one task (it is still awaited by ``shutdown()`` until it returns).
    func cancel(_ handle: Handle?) {
        guard let handle else { return }
        state.withLock { $0.running[handle.id] }?.cancel()
    }

    /// Cancels every task and waits for all of them; later ``spawn(_:)`` calls start nothing.
    func shutdown() async {
        let tasks = state.withLock { s in
            s.closed = true
            return Array(s.running.values)
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    private func ended(_ id: Int) { state.withLock { _ = $0.running.removeValue(forKey: id) } }
}
