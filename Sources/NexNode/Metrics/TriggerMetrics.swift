import CoreMetrics
import Prometheus
import Synchronization

/// The series of JetStream triggers (stream, key-value, object-store and schedule), one set per trigger of a
/// workload: messages delivered, acknowledged, retried and dead-lettered, the consumer's pending messages as
/// of the last pull, and how long the function took. Made through the node's factory, so they render with
/// the node's other metrics; a workload's series go when it leaves the node.
final class TriggerMetrics: Sendable {
    private let factory: PrometheusMetricsFactory
    private let series = Mutex<[Key: Series]>([:])

    init(factory: PrometheusMetricsFactory) {
        self.factory = factory
    }

    enum Name {
        static let delivered = "nex_trigger_delivered_total"
        static let acked = "nex_trigger_acked_total"
        static let retried = "nex_trigger_retried_total"
        static let deadLettered = "nex_trigger_dead_lettered_total"
        static let pending = "nex_trigger_pending_messages"
        static let duration = "nex_trigger_handler_duration_seconds"
    }

    /// One trigger of one workload: its consumer names it.
    struct Key: Hashable, Sendable {
        var workload: WorkloadName
        var consumer: String
        var type: String
    }

    /// The series of one trigger, kept by its runner.
    struct Series: Sendable {
        let delivered: CoreMetrics.Counter
        let acked: CoreMetrics.Counter
        let retried: CoreMetrics.Counter
        let deadLettered: CoreMetrics.Counter
        let pending: CoreMetrics.Gauge
        let duration: CoreMetrics.Timer

        fileprivate func destroy() {
            delivered.destroy()
            acked.destroy()
            retried.destroy()
            deadLettered.destroy()
            pending.destroy()
            duration.destroy()
        }
    }

    /// The series of a trigger (made on first use; every copy of the workload on this node shares them).
    func series(for key: Key) -> Series {
        series.withLock { all in
            if let existing = all[key] { return existing }
            let labels = [
                ("namespace", key.workload.namespace), ("workload", key.workload.workload),
                ("consumer", key.consumer), ("type", key.type),
            ]
            let made = Series(
                delivered: Counter(label: Name.delivered, dimensions: labels, factory: factory),
                acked: Counter(label: Name.acked, dimensions: labels, factory: factory),
                retried: Counter(label: Name.retried, dimensions: labels, factory: factory),
                deadLettered: Counter(label: Name.deadLettered, dimensions: labels, factory: factory),
                pending: Gauge(label: Name.pending, dimensions: labels, factory: factory),
                duration: Timer(label: Name.duration, dimensions: labels, factory: factory))
            all[key] = made
            return made
        }
    }

    /// Drops the series of workloads no longer on the node.
    func keep(only present: Set<WorkloadName>) {
        series.withLock { all in
            for (key, series) in all where !present.contains(key.workload) {
                series.destroy()
                all[key] = nil
            }
        }
    }
}
