import Foundation
import Synchronization

/// One long-lived thread that performs every spawn (see ``ChildProcess``): a child's parent-death signal is
/// tied to the thread that forked it, and this one never exits.
final class SpawnThread: Sendable {
    static let shared = SpawnThread()

    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let ready = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            while true {
                ready.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "nex-spawn"
        thread.start()
    }

    /// Runs `body` on the spawn thread and waits for it (a fork/exec takes about a millisecond).
    func run<R: Sendable>(_ body: @escaping @Sendable () -> R) -> R {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<R?>(nil)
        jobs.withLock {
            $0.append({
                result.withLock { $0 = body() }
                done.signal()
            })
        }
        ready.signal()
        done.wait()
        return result.withLock { $0! }
    }
}
