import Logging
import Synchronization
import Testing

@testable import NexNode

/// One function's flood of log lines delays and drops only its own lines.
@Suite struct AgentLogRelayTests {
    @Test func aNoisyFunctionDelaysAndDropsOnlyItsOwnLines() async {
        let failures = PublishFailures()
        let relay = AgentLogRelay(
            failures: failures, logger: Logger(label: "test"), limit: 100, byteLimit: 1 << 20,
            totalByteLimit: 4 << 20)
        for i in 0..<150 { relay.add(agentID: "noisy", level: 0, text: Array("n\(i)".utf8)) }
        relay.add(agentID: "quiet", level: 0, text: Array("q0".utf8))
        relay.add(agentID: "quiet", level: 0, text: Array("q1".utf8))
        // Past its own limit the noisy one loses lines; the quiet one loses none.
        #expect(failures.logs.load(ordering: .relaxed) == 50)

        let delivered = Locked<[String]>([])
        let forwarding = Task {
            await relay.forward { line in
                delivered.withLock { $0.append(line.agentID + ":" + String(decoding: line.text, as: UTF8.self)) }
            }
        }
        while delivered.value.count < 102 { await Task.yield() }
        forwarding.cancel()
        await forwarding.value
        let lines = delivered.value
        // Turns alternate: the quiet function's lines come second and fourth, not after the flood.
        #expect(Array(lines.prefix(4)) == ["noisy:n0", "quiet:q0", "noisy:n1", "quiet:q1"])
        #expect(lines.filter { $0.hasPrefix("noisy:") } == (0..<100).map { "noisy:n\($0)" })
    }

    @Test func theTotalIsBoundedAcrossFunctions() {
        let failures = PublishFailures()
        let relay = AgentLogRelay(
            failures: failures, logger: Logger(label: "test"), limit: 1_000, byteLimit: 1_000, totalByteLimit: 2_500)
        let line = [UInt8](repeating: 65, count: 100)
        for agent in ["a", "b", "c"] {
            for _ in 0..<10 { relay.add(agentID: agent, level: 0, text: line) }
        }
        // a and b fill their 1,000 bytes; c gets the 500 left of the 2,500.
        #expect(failures.logs.load(ordering: .relaxed) == 5)
    }
}

/// A value behind a lock, for a test's tasks.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}
