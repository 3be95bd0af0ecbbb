/// The JetStream stream in which nodes keep the last lines of each workload's log, so `nex logs` shows what
/// happened before it was asked (an extension of this implementation: Nex keeps no log lines). Every node of an
/// account makes it, the same, when JetStream is there.
public enum NexLogStream {
    public static let name = "NEX_LOGS"
    /// Every log subject (`$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`, and the nodes' own).
    public static let subjects = ["$NEX.logs.>"]
    /// Lines kept of each workload (its subject), oldest dropped first.
    public static let linesPerWorkload: Int64 = 200
    /// How long a line is kept.
    public static let maxAge: Duration = .seconds(24 * 3600)
    /// Bytes kept in all.
    public static let maxBytes: Int64 = 64 << 20
}
