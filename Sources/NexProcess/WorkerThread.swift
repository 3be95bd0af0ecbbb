import Foundation
import Synchronization

/// A thread of its own that runs blocking jobs one at a time (a V8 isolate, a WebAssembly instance), so that
/// blocking engines never run on NIO event loops or the cooperative pool.
public final class WorkerThread: Sendable {
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let ready = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)

    /// Starts the thread, named `name`.
    public init(name: String) {
        startThread(named: name) { [self] in
            while !stopped.load(ordering: .acquiring) {
                ready.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
    }

    /// Runs `body` on the thread and waits (without blocking the caller's thread) for its result.
    nonisolated(nonsending) public func run<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R {
        await withCheckedContinuation { continuation in
            jobs.withLock { $0.append({ continuation.resume(returning: body()) }) }
            ready.signal()
        }
    }

    /// Lets the thread end after the jobs already queued.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        ready.signal()
    }
}
