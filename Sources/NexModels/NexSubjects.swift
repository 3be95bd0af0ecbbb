/// Every subject Nex speaks, in one place (wire contract §1, §2, §5).
public enum NexSubjects {
    public static let ping = "$NEX.PING"
    public static func ping(node: String) -> String { "$NEX.PING.\(node)" }
    public static let auction = "$NEX.AUCTION"
    public static func workloadPing(namespace: String, workload: String? = nil) -> String {
        workload.map { "$NEX.WPING.\(namespace).\($0)" } ?? "$NEX.WPING.\(namespace)"
    }
    public static func info(namespace: String, node: String) -> String { "$NEX.INFO.\(namespace).\(node)" }
    public static func deploy(namespace: String, node: String) -> String { "$NEX.DEPLOY.\(namespace).\(node)" }
    public static func stop(namespace: String, node: String) -> String { "$NEX.STOP.\(namespace).\(node)" }
    public static func lameDuck(node: String) -> String { "$NEX.LAMEDUCK.\(node)" }

    /// `$NEX.events.<ns>.<type>`; node events use namespace `system`.
    public static func event(namespace: String, type: String) -> String { "$NEX.events.\(namespace).\(type)" }
    /// All events of a namespace (or every namespace with `*`).
    public static func events(namespace: String = "*") -> String { "$NEX.events.\(namespace).*" }

    /// `$NEX.logs.<ns>.<node>.<workload_name>.<workload_id>`.
    public static func logs(namespace: String, node: String, workloadName: String, workloadID: String) -> String {
        "$NEX.logs.\(namespace).\(node).\(workloadName).\(workloadID)"
    }

    /// A filter over logs; nil parts match anything.
    public static func logsFilter(
        namespace: String? = nil, node: String? = nil, workloadName: String? = nil, workloadID: String? = nil
    ) -> String {
        "$NEX.logs.\(namespace ?? "*").\(node ?? "*").\(workloadName ?? "*").\(workloadID ?? "*")"
    }

    /// The namespace node-level events use.
    public static let systemNamespace = "system"
}
