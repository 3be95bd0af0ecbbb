import Foundation
import NexModels

/// A deploy the node accepted, as it was received: what the node keeps to run the workload again after
/// a restart. The request's environment stays sealed to the node's xkey and its host-services credentials
/// are sealed the same way (see ``WorkloadJournal``): nothing decrypted is kept.
struct WorkloadRecord: Codable, Sendable, Equatable {
    var id: String
    var namespace: String
    var request: DeployRequest
    /// The signed artifact hash (hex SHA-256).
    var hash: String
    /// When the node checked the deploy's token; a replay checks it as of then (a token that has expired
    /// since still covers the workload it started).
    var acceptedAt: Date
    var totalBytes: Int
    var retryCount: Int
    /// The workload this one restarts (an essential restart has a new id): a journal that holds both after
    /// a crash keeps only this one.
    var replaces: String?

    var name: String { request.workloadName }
    var type: String { request.type }
    var essential: Bool { request.essential ?? false }
    var key: String { namespace + "/" + name }

    enum CodingKeys: String, CodingKey {
        case id, namespace, request, replaces, hash
        case acceptedAt = "accepted_at"
        case totalBytes = "total_bytes"
        case retryCount = "retry_count"
    }
}

/// Every workload of the node with its record and status: the one place a workload's life is kept.
///
/// It is a plain value: the workload manager feeds it events (accepted, assigned, started, exited, stop
/// requested, removed) and carries out what they return. Changes to keep in the journal come back as
/// ``Change``s, so the value never does I/O and unit tests drive it without processes.
struct NodeState: Sendable {
    enum Status: Sendable, Equatable {
        /// Accepted; waiting for an agent.
        case starting
        /// An agent has the deploy and has not answered yet (its output is already the workload's).
        case launching(agent: String)
        case running(agent: String)
        /// An essential workload waits out its backoff before it starts again (under a new id).
        case restarting
        /// A stop or the node's shutdown began; whoever holds the workload's agent ends it.
        case stopping(agent: String?)

        var agent: String? {
            switch self {
            case .launching(let a), .running(let a): a
            case .stopping(let a): a
            case .starting, .restarting: nil
            }
        }
    }

    struct Entry: Sendable, Equatable {
        var record: WorkloadRecord
        var status: Status
        /// When this run of the workload began (uptimes).
        var since: Date
        /// Whether the workload's record is kept in the journal (autostart workloads are not).
        var persisted = true
        /// Whether its deployer was told it runs (or its record came from the journal, or it is an essential
        /// restart): a record is kept over a node shutdown only then. A deploy cut short by the shutdown is
        /// answered with an error, so its record goes: the node never runs what it said had failed.
        var confirmed = false
        var healthy = true
        var missedPings = 0
        /// An exit the agent reported before its deploy answer arrived (a workload that ends at once).
        var earlyExit: WorkloadExited?

        var id: String { record.id }
    }

    /// A write the journal must make.
    enum Change: Sendable, Equatable {
        case save(WorkloadRecord)
        case delete(id: String)
    }

    /// When essential workloads are restarted.
    struct RestartPolicy: Sendable {
        var initialBackoff: Duration
        var maxBackoff: Duration
        /// 0: no limit.
        var maxRestarts: Int

        func allows(retry: Int) -> Bool { maxRestarts == 0 || retry < maxRestarts }

        /// Exponential backoff: `initial · 2^retry`, capped at `max`.
        func delay(retry: Int) -> Duration {
            Swift.min(initialBackoff * (1 << Swift.min(retry, 20)), maxBackoff)
        }
    }

    private(set) var entries: [String: Entry] = [:]
    /// Places held for deploys being checked and downloaded (by reservation, the workload's `namespace/name`),
    /// so duplicates and limits count them; a place ends when its workload is accepted or the deploy fails.
    private var reservations: [Int: String] = [:]
    private var nextReservation = 0
    let policy: RestartPolicy

    init(policy: RestartPolicy) { self.policy = policy }

    /// Workloads that count as on the node (every status but stopping), oldest first.
    func workloads(in namespace: String? = nil) -> [Entry] {
        entries.values.filter { entry in
            if case .stopping = entry.status { return false }
            return namespace == nil || entry.record.namespace == namespace
        }.sorted { ($0.since, $0.id) < ($1.since, $1.id) }
    }

    func entry(agent: String) -> Entry? { entries.values.first { $0.status.agent == agent } }

    // MARK: Admission

    /// A place held for a deploy until it is accepted or released.
    struct Reservation: Sendable, Hashable {
        let id: Int
    }

    /// Refuses a deploy of `name` when the node already runs (or is receiving) one and duplicates are off,
    /// or when `max_workloads` is reached; otherwise holds a place for it until it is accepted or released.
    mutating func reserve(
        name: String, namespace: String, allowDuplicates: Bool, maxWorkloads: Int?
    ) -> Result<Reservation, NexError> {
        let key = namespace + "/" + name
        let current = workloads()
        if !allowDuplicates, reservations.values.contains(key) || current.contains(where: { $0.record.key == key }) {
            return .failure(
                NexError(
                    .duplicate,
                    "workload \(name) is already running in namespace \(namespace) on this node: stop it first "
                        + "(devrun does so by default), or set allow_duplicate_workloads on the node"))
        }
        if let max = maxWorkloads, current.count + reservations.count >= max {
            return .failure(
                NexError(
                    .limitExceeded, "node_limits.max_workloads (\(max)) reached: stop a workload or use another node"))
        }
        nextReservation += 1
        reservations[nextReservation] = key
        return .success(Reservation(id: nextReservation))
    }

    /// Gives up a place (a deploy that failed before it was accepted; nothing when it was accepted).
    mutating func release(_ reservation: Reservation) { reservations[reservation.id] = nil }

    /// Bytes of every workload on the node.
    var totalBytes: Int { workloads().map(\.record.totalBytes).reduce(0, +) }

    // MARK: Events

    /// A deploy passed its checks (or a recorded one is replayed): it is on the node from now on.
    /// `persist`: the workload is kept in the journal; `alreadyRecorded`: its record is there (a replay).
    mutating func accepted(
        _ record: WorkloadRecord, reservation: Reservation? = nil, persist: Bool, alreadyRecorded: Bool = false,
        now: Date = Date()
    ) -> [Change] {
        // The workload now counts itself: its place ends.
        if let reservation { reservations[reservation.id] = nil }
        entries[record.id] = Entry(
            record: record, status: .starting, since: now, persisted: persist, confirmed: alreadyRecorded)
        return persist && !alreadyRecorded ? [.save(record)] : []
    }

    /// The deployer is about to be told the workload runs: from now on a shutdown keeps its record.
    mutating func confirmed(_ id: String) {
        entries[id]?.confirmed = true
    }

    /// An agent was given to the workload. False when the workload was stopped meanwhile (the caller
    /// destroys the agent).
    mutating func assigned(_ id: String, agent: String) -> Bool {
        guard entries[id]?.status == .starting else { return false }
        entries[id]?.status = .launching(agent: agent)
        return true
    }

    enum StartOutcome: Sendable, Equatable {
        /// Running: the caller subscribes its triggers and announces it.
        case running
        /// A stop arrived while the agent took the deploy: the caller ends the workload now.
        case stopRequested
        /// Gone (removed meanwhile): the caller only cleans up.
        case gone
    }

    /// The agent accepted the deploy.
    mutating func started(_ id: String) -> StartOutcome {
        guard let entry = entries[id] else { return .gone }
        switch entry.status {
        case .launching(let agent):
            entries[id]?.status = .running(agent: agent)
            return .running
        case .stopping: return .stopRequested
        case .starting, .running, .restarting: return .gone
        }
    }

    /// A stop (the issuer's, the node's shutdown or a lame-duck drain) begins. Returns the workload as it
    /// was, or nil when there is nothing to stop (unknown, or already stopping).
    mutating func stopRequested(_ id: String) -> Entry? {
        guard let entry = entries[id] else { return nil }
        if case .stopping = entry.status { return nil }
        entries[id]?.status = .stopping(agent: entry.status.agent)
        return entry
    }

    /// The workload is gone from the node. `forget` removes its record too (a stop by its issuer, a failed
    /// start, a lame-duck drain); a node shutdown keeps it to start the workload again, unless its deployer
    /// was never told it runs.
    mutating func removed(_ id: String, forget: Bool) -> [Change] {
        guard let entry = entries.removeValue(forKey: id) else { return [] }
        return (forget || !entry.confirmed) && entry.persisted ? [.delete(id: id)] : []
    }

    enum ExitOutcome: Sendable, Equatable {
        /// Not a workload's exit to act on (unknown agent, a stop under way, or kept as an early exit).
        case ignored
        /// Ended for good: the caller cleans up (the record is already gone).
        case ended(Entry)
        /// Ended, and restarted after `delay` under the new record's id (already recorded).
        case restart(old: Entry, new: WorkloadRecord, delay: Duration)
    }

    /// The workload on `agent` ended by itself (`code` -1: the agent died or stopped answering).
    mutating func exited(
        agent: String, report: WorkloadExited, lameDuck: Bool, newID: String, now: Date = Date()
    ) -> (ExitOutcome, [Change]) {
        guard let entry = entry(agent: agent) else { return (.ignored, []) }
        switch entry.status {
        case .launching:
            entries[entry.id]?.earlyExit = report
            return (.ignored, [])
        case .running:
            break
        case .starting, .restarting, .stopping:
            return (.ignored, [])
        }
        entries[entry.id] = nil
        let record = entry.record
        let forget: [Change] = entry.persisted ? [.delete(id: record.id)] : []
        guard record.essential, report.code != 0, !lameDuck, policy.allows(retry: record.retryCount) else {
            return (.ended(entry), forget)
        }
        var next = record
        next.id = newID
        next.retryCount = record.retryCount + 1
        next.replaces = record.id
        next.request.retryCount = next.retryCount
        next.request.retriedAt = ISO8601DateFormatter().string(from: now)
        entries[newID] = Entry(
            record: next, status: .restarting, since: now, persisted: entry.persisted, confirmed: true)
        // Saved before the old record goes: a crash in between leaves both, and the journal keeps the new one.
        let changes: [Change] = entry.persisted ? [.save(next), .delete(id: record.id)] : []
        return (.restart(old: entry, new: next, delay: policy.delay(retry: record.retryCount)), changes)
    }

    /// The backoff of a restart ended. False when the workload was stopped meanwhile.
    mutating func restartDue(_ id: String) -> Bool {
        guard entries[id]?.status == .restarting else { return false }
        entries[id]?.status = .starting
        return true
    }

    /// A restart could not be carried out (no agent in time, the agent refused, triggers could not be
    /// subscribed): it counts as another failed run. Returns the delay before the next try and the record to
    /// save, or nil when the restart policy is used up or the workload is no longer restarting (a stop or
    /// shutdown took it): then the caller ends it as any failed start.
    mutating func restartFailed(_ id: String) -> (delay: Duration, changes: [Change])? {
        guard var entry = entries[id] else { return nil }
        switch entry.status {
        case .starting, .launching, .running: break
        case .restarting, .stopping: return nil
        }
        guard policy.allows(retry: entry.record.retryCount) else { return nil }
        let delay = policy.delay(retry: entry.record.retryCount)
        entry.record.retryCount += 1
        entry.record.request.retryCount = entry.record.retryCount
        entry.status = .restarting
        entries[id] = entry
        return (delay, entry.persisted ? [.save(entry.record)] : [])
    }

    /// The result of a health ping of the workload's agent. True when the agent has now missed three in a
    /// row (the caller ends the workload).
    mutating func pinged(_ id: String, ok: Bool) -> Bool {
        guard let entry = entries[id], case .running = entry.status else { return false }
        entries[id]?.healthy = ok
        entries[id]?.missedPings = ok ? 0 : entry.missedPings + 1
        return !ok && entry.missedPings + 1 >= 3
    }
}
