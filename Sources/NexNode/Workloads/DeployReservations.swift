import NexModels

/// A place held for a deploy until it is accepted or released.
struct Reservation: Sendable, Hashable {
    let id: Int
}

/// Places held for deploys being checked and downloaded, so duplicates and `max_workloads` count them; a place
/// ends when its workload is accepted (it then counts itself) or the deploy fails.
struct DeployReservations: Sendable {
    /// The workload's `namespace/name`, by place.
    private var places: [Int: String] = [:]
    private var last = 0

    /// Refuses a deploy of `name` when the node already runs (or is receiving) one and duplicates are off,
    /// or when `max_workloads` is reached; otherwise holds a place for it. `present`: the `namespace/name`
    /// of every workload on the node that this deploy may not duplicate (a copy it replaces is left out);
    /// `counted`: how many workloads are on the node.
    mutating func reserve(
        name: String, namespace: String, present: [String], counted: Int, allowDuplicates: Bool, maxWorkloads: Int?
    ) -> Result<Reservation, NexError> {
        let key = namespace + "/" + name
        if !allowDuplicates, places.values.contains(key) || present.contains(key) {
            return .failure(
                NexError(
                    .duplicate,
                    "workload \(name) is already running in namespace \(namespace) on this node: replace it with "
                        + "nex devrun (same issuer), stop it first, or set allow_duplicate_workloads on the node"))
        }
        if let max = maxWorkloads, counted + places.count >= max {
            return .failure(
                NexError(
                    .limitExceeded, "node_limits.max_workloads (\(max)) reached: stop a workload or use another node"))
        }
        last += 1
        places[last] = key
        return .success(Reservation(id: last))
    }

    /// Gives up a place (nothing when it was already given up).
    mutating func release(_ reservation: Reservation) { places[reservation.id] = nil }
}
