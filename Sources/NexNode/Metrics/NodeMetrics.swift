import CoreMetrics
import NATS
import Prometheus
import Synchronization

/// A node's Prometheus metrics. The registry is the node's own, not swift-metrics' process-wide one: tests run
/// several nodes in one process, and `MetricsSystem.bootstrap` may be called once per process.
///
/// Events (deploys, triggers, host-service calls) are counted as they happen, through swift-metrics types made
/// by a ``PrometheusMetricsFactory`` on this registry. Levels (workloads, warm agents, cgroup usage, the NATS
/// client's counters) are read when scraped: ``render(_:)`` takes a ``NodeMetricsSnapshot`` and sets them first.
public final class NodeMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let levels = Mutex(Levels())

    /// Function durations, in seconds: from a cached V8 call to a slow host-service round trip.
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10),
        .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Name.functionDuration] = Self.durationBuckets
        self.registry = registry
        self.factory = factory
        // Both outcomes exist from the start, at 0: a rate over a series that appears later misses its start.
        for outcome in ["accepted", "refused"] {
            Counter(label: Name.deploys, dimensions: [("outcome", outcome)], factory: factory).increment(by: 0)
        }
    }

    /// Metric names, as Nex's issue names them; one label set per name (the registry traps on a second).
    enum Name {
        static let workloads = "nex_workloads"
        static let agentsWarm = "nex_agents_warm"
        static let deployedBytes = "nex_deployed_bytes"
        static let deploys = "nex_deploys_total"
        static let functionTriggers = "nex_function_triggers_total"
        static let functionDuration = "nex_function_duration_seconds"
        static let hostServiceCalls = "nex_host_service_calls_total"
        static let workloadMemory = "nex_workload_memory_bytes"
        static let workloadCPU = "nex_workload_cpu_seconds_total"
        static let natsInMessages = "nex_nats_in_messages_total"
        static let natsOutMessages = "nex_nats_out_messages_total"
        static let natsInBytes = "nex_nats_in_bytes_total"
        static let natsOutBytes = "nex_nats_out_bytes_total"
        static let natsReconnects = "nex_nats_reconnects_total"
    }

    // MARK: Events

    /// A deploy request was answered.
    func deploy(accepted: Bool) {
        Counter(label: Name.deploys, dimensions: [("outcome", accepted ? "accepted" : "refused")], factory: factory)
            .increment()
    }

    /// A function ran for a trigger; `elapsed` is the function's own time when it answered.
    func functionTriggered(namespace: String, workload: String, succeeded: Bool, elapsedNanos: Int64?) {
        Counter(
            label: Name.functionTriggers,
            dimensions: [("namespace", namespace), ("workload", workload), ("outcome", succeeded ? "ok" : "error")],
            factory: factory
        ).increment()
        if let elapsedNanos {
            Timer(
                label: Name.functionDuration, dimensions: [("namespace", namespace), ("workload", workload)],
                factory: factory
            ).recordNanoseconds(elapsedNanos)
        }
    }

    /// A host-service call was answered; `outcome` is `ok` or the error's code.
    func hostServiceCall(service: String, outcome: String) {
        Counter(
            label: Name.hostServiceCalls, dimensions: [("service", service), ("outcome", outcome)], factory: factory
        )
        .increment()
    }

    // MARK: Levels, read at scrape time

    /// The Prometheus text exposition, with the levels of `snapshot`.
    public func render(_ snapshot: NodeMetricsSnapshot) -> [UInt8] {
        levels.withLock { update(&$0, with: snapshot) }
        return registry.emitToBuffer()
    }

    private struct Levels {
        var workloadGauges: [WorkloadKind: Prometheus.Gauge] = [:]
        var memoryGauges: [WorkloadName: Prometheus.Gauge] = [:]
        var cpuCounters: [WorkloadName: (counter: Prometheus.Counter, seconds: Double)] = [:]
        var natsSeen = NATSStatistics()
    }

    private func update(_ levels: inout Levels, with snapshot: NodeMetricsSnapshot) {
        // Kinds seen once stay, at 0 when none runs: a series that vanishes reads as "no data", not as none.
        for kind in levels.workloadGauges.keys where snapshot.workloads[kind] == nil {
            levels.workloadGauges[kind]?.set(0.0)
        }
        for (kind, count) in snapshot.workloads {
            let gauge =
                levels.workloadGauges[kind]
                ?? registry.makeGauge(
                    descriptor: .init(
                        metricName: Name.workloads, unitName: "", helpText: "Workloads running on this node"),
                    labels: [("namespace", kind.namespace), ("type", kind.type)])
            levels.workloadGauges[kind] = gauge
            gauge.set(Double(count))
        }
        registry.makeGauge(
            descriptor: .init(metricName: Name.agentsWarm, unitName: "", helpText: "Warm agents ready for a deploy")
        ).set(Double(snapshot.warmAgents))
        registry.makeGauge(
            descriptor: .init(
                metricName: Name.deployedBytes, unitName: "", helpText: "Bytes of the artifacts deployed here")
        ).set(Double(snapshot.deployedBytes))

        // Per-workload usage: series of workloads that ended are removed.
        let running = Set(snapshot.usage.keys)
        for gone in levels.memoryGauges.keys where !running.contains(gone) {
            if let gauge = levels.memoryGauges.removeValue(forKey: gone) { registry.unregisterGauge(gauge) }
            if let cpu = levels.cpuCounters.removeValue(forKey: gone) { registry.unregisterCounter(cpu.counter) }
        }
        for (name, usage) in snapshot.usage {
            let labels = [("namespace", name.namespace), ("workload", name.workload)]
            let memory =
                levels.memoryGauges[name]
                ?? registry.makeGauge(
                    descriptor: .init(
                        metricName: Name.workloadMemory, unitName: "",
                        helpText: "Memory the workload's sandbox uses (its cgroup's memory.current)"),
                    labels: labels)
            levels.memoryGauges[name] = memory
            memory.set(Double(usage.memoryBytes))
            var cpu =
                levels.cpuCounters[name]
                ?? (
                    registry.makeCounter(
                        descriptor: .init(
                            metricName: Name.workloadCPU, unitName: "",
                            helpText: "CPU time of the workload's sandbox (its cgroup's cpu.stat usage_usec)"),
                        labels: labels), 0
                )
            // Less than last time: the workload restarted in a new sandbox, whose time counts from zero.
            let delta = usage.cpuSeconds >= cpu.seconds ? usage.cpuSeconds - cpu.seconds : usage.cpuSeconds
            if delta > 0 { cpu.counter.increment(by: delta) }
            cpu.seconds = usage.cpuSeconds
            levels.cpuCounters[name] = cpu
        }

        // The client's counters only grow: the registry's counters follow them by the difference.
        let nats = snapshot.nats
        let seen = levels.natsSeen
        let deltas: [(String, String, Int)] = [
            (Name.natsInMessages, "Messages the node's NATS connection received", nats.inMessages - seen.inMessages),
            (Name.natsOutMessages, "Messages the node's NATS connection sent", nats.outMessages - seen.outMessages),
            (Name.natsInBytes, "Payload bytes the node's NATS connection received", nats.inBytes - seen.inBytes),
            (Name.natsOutBytes, "Payload bytes the node's NATS connection sent", nats.outBytes - seen.outBytes),
            (Name.natsReconnects, "Times the node's NATS connection reconnected", nats.reconnects - seen.reconnects),
        ]
        for (name, help, delta) in deltas {
            let counter = registry.makeCounter(descriptor: .init(metricName: name, unitName: "", helpText: help))
            if delta > 0 { counter.increment(by: Int64(delta)) }
        }
        levels.natsSeen = nats
    }
}

/// A workload kind for ``NodeMetrics``: its namespace and type.
public struct WorkloadKind: Hashable, Sendable {
    public var namespace: String
    public var type: String
}

/// A workload for ``NodeMetrics``: its namespace and name.
public struct WorkloadName: Hashable, Sendable {
    public var namespace: String
    public var workload: String
}

/// The levels a scrape reports, gathered by the node.
public struct NodeMetricsSnapshot: Sendable {
    public var workloads: [WorkloadKind: Int] = [:]
    public var warmAgents = 0
    public var deployedBytes = 0
    /// Sandbox usage per workload, where its sandbox has a cgroup.
    public var usage: [WorkloadName: (memoryBytes: Int, cpuSeconds: Double)] = [:]
    public var nats = NATSStatistics()
}

extension NexNode {
    /// The levels a scrape reports now: workloads, the warm pool, deployed bytes, each sandbox's cgroup usage
    /// and the node's NATS connection.
    public func metricsSnapshot() async -> NodeMetricsSnapshot {
        var snapshot = NodeMetricsSnapshot()
        snapshot.nats = client.statistics
        guard let runtime else { return snapshot }
        snapshot.warmAgents = await runtime.pool.available
        let levels = await runtime.manager.metricsLevels()
        snapshot.workloads = levels.workloads
        snapshot.deployedBytes = levels.deployedBytes
        for (name, sandbox) in levels.sandboxes {
            guard let usage = sandbox.usage() else { continue }
            // Duplicates (allow_duplicate_workloads) of one name add up.
            let sum = snapshot.usage[name] ?? (0, 0)
            snapshot.usage[name] = (sum.memoryBytes + usage.memoryBytes, sum.cpuSeconds + usage.cpuSeconds)
        }
        return snapshot
    }
}
