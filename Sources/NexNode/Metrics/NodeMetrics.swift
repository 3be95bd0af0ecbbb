import CoreMetrics
import NATS
import NexProcess
import NexSandbox
import Prometheus
import Synchronization

/// A node's Prometheus metrics. The registry is the node's own, not swift-metrics' process-wide one: tests run
/// several nodes in one process, and `MetricsSystem.bootstrap` may be called once per process.
///
/// Events (deploys, triggers, host-service calls) are counted as they happen, through swift-metrics types made
/// by a ``PrometheusMetricsFactory`` on this registry and kept, so an event costs a lookup and an atomic add.
/// Levels (workloads, warm agents, cgroup usage, the NATS client's counters) are read when scraped:
/// ``render(_:)`` takes a ``NodeMetricsSnapshot`` and sets them first, and drops the series of workloads
/// that are gone (so deploying under ever-new names does not grow the registry without end).
public final class NodeMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory
    private let state = Mutex(State())
    /// The series of stream, key-value, object-store and schedule triggers.
    let triggers: TriggerMetrics

    /// Function durations, in seconds: from a cached V8 call to a slow host-service round trip.
    static let durationBuckets: [Duration] = [
        .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10),
        .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[Name.functionDuration] = Self.durationBuckets
        factory.durationHistogramBuckets[TriggerMetrics.Name.duration] = Self.durationBuckets
        self.registry = registry
        self.factory = factory
        self.triggers = TriggerMetrics(factory: factory)
        // Both outcomes exist from the start, at 0: a rate over a series that appears later misses its start.
        let deploys = [true, false].map { accepted in
            (
                accepted,
                Counter(
                    label: Name.deploys, dimensions: [("outcome", accepted ? "accepted" : "refused")], factory: factory)
            )
        }
        state.withLock { $0.deploys = Dictionary(uniqueKeysWithValues: deploys) }
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
        static let subjectRefusals = "nex_subject_refusals_total"
        static let workloadMemory = "nex_workload_memory_bytes"
        static let workloadCPU = "nex_workload_cpu_seconds_total"
        static let natsInMessages = "nex_nats_in_messages_total"
        static let natsOutMessages = "nex_nats_out_messages_total"
        static let natsInBytes = "nex_nats_in_bytes_total"
        static let natsOutBytes = "nex_nats_out_bytes_total"
        static let natsReconnects = "nex_nats_reconnects_total"
    }

    /// A function's series.
    private struct FunctionSeries {
        var ok: CoreMetrics.Counter
        var error: CoreMetrics.Counter
        var duration: Timer
    }

    private struct State {
        var deploys: [Bool: CoreMetrics.Counter] = [:]
        var functions: [WorkloadName: FunctionSeries] = [:]
        var hostCalls: [HostCall: CoreMetrics.Counter] = [:]
        var subjectRefusals: [SubjectRefusalKey: CoreMetrics.Counter] = [:]
        var workloadGauges: [WorkloadKind: Prometheus.Gauge] = [:]
        /// Kinds whose gauge read 0 at the last scrape (removed at the next unless they run again).
        var zeroedKinds: Set<WorkloadKind> = []
        var memoryGauges: [WorkloadName: Prometheus.Gauge] = [:]
        var cpuCounters: [WorkloadName: Prometheus.Counter] = [:]
        /// The CPU time each sandbox had at the last scrape (by sandbox, so duplicates and restarts add up).
        var cpuSeen: [String: Double] = [:]
        var natsSeen = NATSStatistics()
    }

    private struct SubjectRefusalKey: Hashable {
        var namespace: String
        var use: SubjectPolicy.Use
        var rule: SubjectPolicy.Rule
    }

    private struct HostCall: Hashable {
        var service: String
        var outcome: HostServiceOutcome
    }

    // MARK: Events

    /// A deploy request was answered.
    func deploy(accepted: Bool) {
        state.withLock { $0.deploys[accepted]?.increment() }
    }

    /// A function ran for a trigger; `elapsedNanos` is the function's own time, when the agent answered.
    func functionTriggered(namespace: String, workload: String, succeeded: Bool, elapsedNanos: Int64?) {
        let name = WorkloadName(namespace: namespace, workload: workload)
        state.withLock { s in
            let series = s.functions[name] ?? makeFunctionSeries(name)
            s.functions[name] = series
            (succeeded ? series.ok : series.error).increment()
            if let elapsedNanos { series.duration.recordNanoseconds(elapsedNanos) }
        }
    }

    private func makeFunctionSeries(_ name: WorkloadName) -> FunctionSeries {
        let labels = [("namespace", name.namespace), ("workload", name.workload)]
        return FunctionSeries(
            ok: Counter(label: Name.functionTriggers, dimensions: labels + [("outcome", "ok")], factory: factory),
            error: Counter(label: Name.functionTriggers, dimensions: labels + [("outcome", "error")], factory: factory),
            duration: Timer(label: Name.functionDuration, dimensions: labels, factory: factory))
    }

    /// A host-service call was answered; `service` is one the node knows (or `unknown`).
    func hostServiceCall(service: String, outcome: HostServiceOutcome) {
        let key = HostCall(service: service, outcome: outcome)
        state.withLock { s in
            let counter =
                s.hostCalls[key]
                ?? Counter(
                    label: Name.hostServiceCalls, dimensions: [("service", service), ("outcome", outcome.rawValue)],
                    factory: factory)
            s.hostCalls[key] = counter
            counter.increment()
        }
    }

    /// The subject policy refused a subject a workload named (as a trigger, or to publish or request on).
    func subjectRefused(_ refusal: SubjectRefusal) {
        let key = SubjectRefusalKey(namespace: refusal.namespace, use: refusal.use, rule: refusal.rule)
        state.withLock { s in
            let counter =
                s.subjectRefusals[key]
                ?? Counter(
                    label: Name.subjectRefusals,
                    dimensions: [
                        ("namespace", key.namespace), ("use", key.use.rawValue), ("rule", key.rule.rawValue),
                    ], factory: factory)
            s.subjectRefusals[key] = counter
            counter.increment()
        }
    }

    // MARK: Levels, read at scrape time

    /// The Prometheus text exposition, with the levels of `snapshot`.
    public func render(_ snapshot: NodeMetricsSnapshot) -> [UInt8] {
        state.withLock { update(&$0, with: snapshot) }
        return registry.emitToBuffer()
    }

    private func update(_ s: inout State, with snapshot: NodeMetricsSnapshot) {
        // A kind no longer running reads 0 for one scrape (a series that just vanishes reads as "no data", not
        // as none), then goes: namespaces come and go, and the registry must not grow with every one.
        for (kind, gauge) in s.workloadGauges where snapshot.workloads[kind] == nil {
            if s.zeroedKinds.insert(kind).inserted {
                gauge.set(0.0)
            } else {
                registry.unregisterGauge(gauge)
                s.workloadGauges[kind] = nil
                s.zeroedKinds.remove(kind)
            }
        }
        for (kind, count) in snapshot.workloads {
            let gauge =
                s.workloadGauges[kind]
                ?? registry.makeGauge(
                    descriptor: .init(
                        metricName: Name.workloads, unitName: "", helpText: "Workloads running on this node"),
                    labels: [("namespace", kind.namespace), ("type", kind.type)])
            s.workloadGauges[kind] = gauge
            s.zeroedKinds.remove(kind)
            gauge.set(Double(count))
        }
        registry.makeGauge(
            descriptor: .init(metricName: Name.agentsWarm, unitName: "", helpText: "Warm agents ready for a deploy")
        ).set(Double(snapshot.warmAgents))
        registry.makeGauge(
            descriptor: .init(
                metricName: Name.deployedBytes, unitName: "", helpText: "Bytes of the artifacts deployed here")
        ).set(Double(snapshot.deployedBytes))

        // Functions no longer on the node lose their series.
        for (name, series) in s.functions where !snapshot.present.contains(name) {
            series.ok.destroy()
            series.error.destroy()
            series.duration.destroy()
            s.functions[name] = nil
        }
        triggers.keep(only: snapshot.present)
        updateUsage(&s, with: snapshot.usage, sandboxes: snapshot.sandboxes, present: snapshot.present)
        updateNATS(&s, with: snapshot.nats)
    }

    /// Per-workload sandbox usage: memory is the sum over its sandboxes now; CPU grows by what each sandbox
    /// used since the last scrape (a new sandbox counts from its start). A sandbox whose usage could not be
    /// read this time keeps its baseline, so its CPU is not counted twice when it is read again; the series
    /// of a workload go when the workload does.
    private func updateUsage(
        _ s: inout State, with samples: [SandboxUsageSample], sandboxes: Set<String>, present: Set<WorkloadName>
    ) {
        var memory: [WorkloadName: Int] = [:]
        var cpuDelta: [WorkloadName: Double] = [:]
        var seen = s.cpuSeen.filter { sandboxes.contains($0.key) }
        for sample in samples {
            memory[sample.workload, default: 0] += sample.usage.memoryBytes
            let before = s.cpuSeen[sample.sandbox] ?? 0
            cpuDelta[sample.workload, default: 0] += max(0, sample.usage.cpuSeconds - before)
            seen[sample.sandbox] = sample.usage.cpuSeconds
        }
        s.cpuSeen = seen
        for name in Set(s.memoryGauges.keys).union(s.cpuCounters.keys) where !present.contains(name) {
            if let gauge = s.memoryGauges.removeValue(forKey: name) { registry.unregisterGauge(gauge) }
            if let counter = s.cpuCounters.removeValue(forKey: name) { registry.unregisterCounter(counter) }
        }
        for (name, bytes) in memory {
            let labels = [("namespace", name.namespace), ("workload", name.workload)]
            let gauge =
                s.memoryGauges[name]
                ?? registry.makeGauge(
                    descriptor: .init(
                        metricName: Name.workloadMemory, unitName: "",
                        helpText: "Memory of the workload's sandbox (cgroup memory.current or memory.usage_in_bytes)"),
                    labels: labels)
            s.memoryGauges[name] = gauge
            gauge.set(Double(bytes))
            let counter =
                s.cpuCounters[name]
                ?? registry.makeCounter(
                    descriptor: .init(
                        metricName: Name.workloadCPU, unitName: "",
                        helpText: "CPU time of the workload's sandbox (cgroup cpu.stat usage_usec or cpuacct.usage)"),
                    labels: labels)
            s.cpuCounters[name] = counter
            if let delta = cpuDelta[name], delta > 0 { counter.increment(by: delta) }
        }
    }

    /// The client's counters only grow: the registry's counters follow them by the difference.
    private func updateNATS(_ s: inout State, with nats: NATSStatistics) {
        let seen = s.natsSeen
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
        s.natsSeen = nats
    }
}

/// How a host-service call ended, as `nex_host_service_calls_total` labels it.
enum HostServiceOutcome: String, Sendable {
    case ok
    /// The service answered with an error (a missing key, a refused subject, a timeout…).
    case error
    /// The service is switched off on this node.
    case disabled
    /// The node's subject policy refused the subject the call named.
    case refused
    /// The server the calls go to could not be reached.
    case unreachable
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

/// One sandbox's usage at a scrape.
public struct SandboxUsageSample: Sendable {
    public var workload: WorkloadName
    /// The sandbox's own id (its agent's).
    public var sandbox: String
    public var usage: SandboxUsage
}

/// The levels a scrape reports, gathered by the node.
public struct NodeMetricsSnapshot: Sendable {
    public var workloads: [WorkloadKind: Int] = [:]
    /// Every workload on the node now (the series of the others are dropped).
    public var present: Set<WorkloadName> = []
    public var warmAgents = 0
    public var deployedBytes = 0
    /// Usage of each sandbox that has a cgroup (and could be read).
    public var usage: [SandboxUsageSample] = []
    /// Every sandbox with a workload now, read or not (by its agent's id).
    public var sandboxes: Set<String> = []
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
        snapshot.present = levels.present
        snapshot.deployedBytes = levels.deployedBytes
        // Reading cgroup files is file work: off the cooperative pool.
        let sandboxes = levels.sandboxes
        snapshot.sandboxes = Set(sandboxes.map { $0.1.agentID })
        snapshot.usage = await BlockingIO.run {
            sandboxes.compactMap { name, sandbox in
                sandbox.usage().map { SandboxUsageSample(workload: name, sandbox: sandbox.agentID, usage: $0) }
            }
        }
        return snapshot
    }
}
