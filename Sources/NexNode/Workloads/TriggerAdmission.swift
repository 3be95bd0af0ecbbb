import Synchronization

/// Bounds a function's triggers in flight on this node: `running` at once in its agent (its
/// `max_concurrency`) and up to `queued` more waiting in the agent's link. A trigger past that is refused at
/// once as overloaded, so that a flood ends in clear errors, never in requests that hang until they time out.
final class TriggerAdmission: Sendable {
    let running: Int
    let queued: Int
    private let inFlight = Atomic<Int>(0)

    init(running: Int, queued: Int) {
        self.running = max(1, running)
        self.queued = max(0, queued)
    }

    /// Takes a place; false when all are taken (then nothing was taken).
    func enter() -> Bool {
        let now = inFlight.add(1, ordering: .relaxed).newValue
        guard now <= running + queued else {
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Gives a place back; once per successful ``enter()``.
    func leave() {
        inFlight.subtract(1, ordering: .relaxed)
    }
}
