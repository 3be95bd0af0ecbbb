import NexSandbox
import Testing

@testable import NexNode

/// The levels a scrape reports, from snapshots alone (no node, no sandbox).
@Suite struct NodeMetricsTests {
    let workload = WorkloadName(namespace: "a", workload: "svc")

    func lines(_ metrics: NodeMetrics, _ snapshot: NodeMetricsSnapshot, _ name: String) -> [String] {
        String(decoding: metrics.render(snapshot), as: UTF8.self).split(separator: "\n").map(String.init).filter {
            $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ")
        }
    }

    func snapshot(cpu: Double?, present: Bool = true) -> NodeMetricsSnapshot {
        var snapshot = NodeMetricsSnapshot()
        if present {
            snapshot.present = [workload]
            snapshot.sandboxes = ["agent-1"]
        }
        if let cpu {
            snapshot.usage = [
                SandboxUsageSample(
                    workload: workload, sandbox: "agent-1", usage: SandboxUsage(memoryBytes: 1024, cpuSeconds: cpu))
            ]
        }
        return snapshot
    }

    /// A sandbox whose usage could not be read once is not counted from zero again when it is read next.
    @Test func cpuIsCountedOnceWhateverScrapesMiss() {
        let metrics = NodeMetrics()
        let cpu = "nex_workload_cpu_seconds_total"
        #expect(lines(metrics, snapshot(cpu: 2), cpu).first?.hasSuffix(" 2.0") == true)
        #expect(lines(metrics, snapshot(cpu: nil), cpu).first?.hasSuffix(" 2.0") == true)
        let after = lines(metrics, snapshot(cpu: 3), cpu)
        #expect(after.first?.hasSuffix(" 3.0") == true, "\(after)")
        // The workload went: its series go.
        #expect(lines(metrics, snapshot(cpu: nil, present: false), cpu).isEmpty)
        #expect(lines(metrics, snapshot(cpu: nil, present: false), "nex_workload_memory_bytes").isEmpty)
    }

    /// A kind that no longer runs reads 0 once, then its series goes.
    @Test func workloadCountsOfGoneKindsGo() {
        let metrics = NodeMetrics()
        var running = NodeMetricsSnapshot()
        running.workloads = [WorkloadKind(namespace: "a", type: "native"): 2]
        #expect(lines(metrics, running, "nex_workloads").first?.hasSuffix(" 2.0") == true)
        let empty = NodeMetricsSnapshot()
        #expect(lines(metrics, empty, "nex_workloads").first?.hasSuffix(" 0.0") == true)
        #expect(lines(metrics, empty, "nex_workloads").isEmpty)
        #expect(lines(metrics, running, "nex_workloads").first?.hasSuffix(" 2.0") == true)
    }
}
