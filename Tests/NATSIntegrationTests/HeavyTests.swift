import Testing

/// Tests that start many processes (clusters, several nodes, virtual machines) run one at a time, so that
/// on two cores they do not starve each other (or the light tests running beside them) into timeouts.
/// Waiting for the permit counts toward a test's time limit: heavy suites set limits that cover the queue.
struct HeavyTestTrait: TestTrait, SuiteTrait, TestScoping {
    var isRecursive: Bool { true }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        // The suite's own scope passes through; each test case takes the one permit.
        guard testCase != nil else { return try await function() }
        await HeavyTestGate.shared.acquire()
        do {
            try await function()
        } catch {
            await HeavyTestGate.shared.release()
            throw error
        }
        await HeavyTestGate.shared.release()
    }
}

extension Trait where Self == HeavyTestTrait {
    /// One heavy test at a time across the whole run.
    static var heavy: Self { HeavyTestTrait() }
}

/// The permit heavy tests share: waiters are resumed in arrival order.
actor HeavyTestGate {
    static let shared = HeavyTestGate()
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}
