import Foundation
import NKeys
import NexModels
import Testing

@testable import NexNode

/// The node's workload state driven by events alone: no processes, no server.
@Suite struct NodeStateTests {
    static let policy = NodeState.RestartPolicy(
        initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(1000), maxRestarts: 3)

    func record(_ id: String, name: String = "svc", essential: Bool = false, retry: Int = 0) -> WorkloadRecord {
        var request = DeployRequest(
            location: WorkloadLocation(bucket: "B", key: name), senderPublicKey: "X", targetNode: "N",
            workloadName: name, workloadJWT: "jwt", type: "native")
        request.essential = essential
        return WorkloadRecord(
            id: id, namespace: "default", request: request, hash: String(repeating: "a", count: 64),
            acceptedAt: Date(timeIntervalSince1970: 1_700_000_000), totalBytes: 10, retryCount: retry)
    }

    func exit(_ code: Int) -> WorkloadExited { WorkloadExited(workloadID: "", code: code, message: "exit \(code)") }

    @Test func backoffDoublesUpToTheCap() {
        let delays = (0..<6).map { Self.policy.delay(retry: $0) }
        #expect(delays.map { $0.components.attoseconds / 1_000_000_000_000_000 } == [100, 200, 400, 800, 0, 0])
        #expect(delays[4] == .seconds(1) && delays[5] == .seconds(1))
    }

    @Test func acceptedIsRecordedAndRunsThroughItsAgent() {
        var state = NodeState(policy: Self.policy)
        let saved = state.accepted(record("w1"), persist: true)
        #expect(saved == [.save(record("w1"))])
        let assigned = state.assigned("w1", agent: "a1")
        #expect(assigned)
        #expect(state.entry(agent: "a1")?.id == "w1")
        let started = state.started("w1")
        #expect(started == .running)
        #expect(state.workloads().map(\.id) == ["w1"])
        // Not persisted (autostart): no journal change.
        let unsaved = state.accepted(record("w2"), persist: false)
        #expect(unsaved.isEmpty)
    }

    /// The race of the old manager: a stop that lands while the start awaits its agent is not overwritten.
    @Test func aStopDuringTheStartWins() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("w1"), persist: true)
        let stopping = state.stopRequested("w1")
        #expect(stopping?.status == .starting)
        let removed = state.removed("w1", forget: true)
        #expect(removed == [.delete(id: "w1")])
        // The start resumes with its agent: refused, and nothing comes back.
        let assigned = state.assigned("w1", agent: "a1")
        let started = state.started("w1")
        #expect(!assigned && started == .gone)
        #expect(state.workloads().isEmpty)

        // A stop while the agent holds the deploy: the start learns it must not announce the workload.
        _ = state.accepted(record("w2"), persist: true)
        let assigned2 = state.assigned("w2", agent: "a2")
        let stopping2 = state.stopRequested("w2")
        #expect(assigned2 && stopping2?.status == .launching(agent: "a2"))
        let started2 = state.started("w2")
        #expect(started2 == .stopRequested)
        let again = state.stopRequested("w2")
        #expect(again == nil)  // a second stop finds nothing to do
        #expect(state.workloads().isEmpty)  // a stopping workload is no longer listed
    }

    @Test func anExitBeforeTheDeployAnswerIsKeptForAfterIt() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("w1"), persist: true)
        _ = state.assigned("w1", agent: "a1")
        let (early, changes) = state.exited(agent: "a1", report: exit(3), lameDuck: false, newID: "x")
        #expect(early == .ignored && changes.isEmpty)
        #expect(state.entries["w1"]?.earlyExit?.code == 3)
        let started = state.started("w1")
        #expect(started == .running)
        let (outcome, after) = state.exited(agent: "a1", report: exit(3), lameDuck: false, newID: "x")
        guard case .ended(let entry) = outcome else {
            Issue.record("expected the workload to end, got \(outcome)")
            return
        }
        #expect(entry.id == "w1" && after == [.delete(id: "w1")] && state.entries.isEmpty)
    }

    @Test func anEssentialWorkloadRestartsUnderANewIdWithItsCount() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("w1", essential: true), persist: true)
        _ = state.assigned("w1", agent: "a1")
        _ = state.started("w1")
        let (outcome, changes) = state.exited(agent: "a1", report: exit(1), lameDuck: false, newID: "w2")
        guard case .restart(let old, let new, let delay) = outcome else {
            Issue.record("expected a restart, got \(outcome)")
            return
        }
        #expect(old.id == "w1" && new.id == "w2" && new.retryCount == 1 && new.replaces == "w1")
        #expect(new.request.retryCount == 1 && delay == .milliseconds(100))
        // The new record is saved before the old one is deleted.
        #expect(changes == [.save(new), .delete(id: "w1")])
        #expect(state.entries["w2"]?.status == .restarting)
        let due = state.restartDue("w2")
        #expect(due && state.entries["w2"]?.status == .starting)

        // A stop during the backoff cancels the restart.
        var stopped = NodeState(policy: Self.policy)
        _ = stopped.accepted(new, persist: true)
        _ = stopped.assigned("w2", agent: "a2")
        _ = stopped.started("w2")
        _ = stopped.exited(agent: "a2", report: exit(1), lameDuck: false, newID: "w3")
        _ = stopped.stopRequested("w3")
        let dueAfterStop = stopped.restartDue("w3")
        #expect(!dueAfterStop)
    }

    @Test func noRestartForCleanExitsLameDuckOrAfterTheLimit() {
        for (code, lameDuck, retry) in [(0, false, 0), (1, true, 0), (1, false, 3)] {
            var state = NodeState(policy: Self.policy)
            _ = state.accepted(record("w", essential: true, retry: retry), persist: true)
            _ = state.assigned("w", agent: "a")
            _ = state.started("w")
            let (outcome, changes) = state.exited(agent: "a", report: exit(code), lameDuck: lameDuck, newID: "n")
            guard case .ended = outcome else {
                Issue.record("code \(code), lame duck \(lameDuck), retry \(retry): \(outcome)")
                continue
            }
            #expect(changes == [.delete(id: "w")] && state.entries.isEmpty)
        }
    }

    /// Autostart workloads are never recorded, not even when an essential one restarts.
    @Test func unrecordedWorkloadsStayUnrecorded() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("w", essential: true), persist: false)
        _ = state.assigned("w", agent: "a")
        _ = state.started("w")
        let (outcome, changes) = state.exited(agent: "a", report: exit(1), lameDuck: false, newID: "n")
        guard case .restart = outcome else {
            Issue.record("expected a restart, got \(outcome)")
            return
        }
        let removed = state.removed("n", forget: true)
        #expect(changes.isEmpty && removed.isEmpty)
    }

    @Test func aShutdownKeepsTheRecordsAStopForgetsThem() {
        var state = NodeState(policy: Self.policy)
        for id in ["a", "b"] {
            _ = state.accepted(record(id, name: id), persist: true)
            _ = state.assigned(id, agent: "agent-" + id)
            _ = state.started(id)
            state.confirmed(id)
        }
        _ = state.stopRequested("a")
        let forgotten = state.removed("a", forget: true)
        _ = state.stopRequested("b")
        let kept = state.removed("b", forget: false)
        #expect(forgotten == [.delete(id: "a")] && kept.isEmpty)
    }

    /// A record outlives a shutdown only when the node will run the workload again and its deployer was
    /// told it runs: a deploy cut short by the shutdown was answered with an error, so its record goes; a
    /// replayed record and an essential restart stay.
    @Test func aShutdownForgetsDeploysItCutShort() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("new", name: "new"), persist: true)
        _ = state.assigned("new", agent: "agent-new")
        _ = state.accepted(record("replayed", name: "replayed"), persist: true, alreadyRecorded: true)
        _ = state.accepted(record("essential", name: "essential", essential: true), persist: true)
        _ = state.assigned("essential", agent: "agent-essential")
        _ = state.started("essential")
        state.confirmed("essential")
        let (outcome, _) = state.exited(
            agent: "agent-essential", report: WorkloadExited(workloadID: "essential", code: 1, message: "x"),
            lameDuck: false, newID: "essential-2")
        guard case .restart = outcome else {
            Issue.record("no restart: \(outcome)")
            return
        }
        var changes: [NodeState.Change] = []
        for id in ["new", "replayed", "essential-2"] {
            _ = state.stopRequested(id)
            changes += state.removed(id, forget: false)
        }
        #expect(changes == [.delete(id: "new")])
    }

    /// A restart that could not be carried out is another failed run: retried with the next backoff while the
    /// policy allows, its record saved with the count; then it ends.
    @Test func aFailedRestartIsRetriedUntilThePolicyEnds() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("e", name: "e", essential: true), persist: true)
        _ = state.assigned("e", agent: "agent-e")
        _ = state.started("e")
        state.confirmed("e")
        _ = state.exited(
            agent: "agent-e", report: WorkloadExited(workloadID: "e", code: 1, message: "x"), lameDuck: false,
            newID: "e2")
        var retries = 0
        while state.restartDue("e2") {
            guard let retry = state.restartFailed("e2") else { break }
            retries += 1
            #expect(retry.delay == Self.policy.delay(retry: retries))
            #expect(retry.changes.count == 1 && state.entries["e2"]?.status == .restarting)
            if case .save(let saved) = retry.changes.first { #expect(saved.retryCount == retries + 1) }
        }
        // The exit was retry 1; the policy allows `maxRestarts` in all.
        #expect(retries == Self.policy.maxRestarts - 1)
        #expect(state.restartFailed("e2") == nil)
    }

    @Test func duplicatesAndLimitsCountDeploysInFlight() throws {
        var state = NodeState(policy: Self.policy)
        func refusal(_ result: Result<NodeState.Reservation, NexError>) -> String? {
            if case .failure(let r) = result { r.message } else { nil }
        }
        let first = try state.reserve(name: "svc", namespace: "default", allowDuplicates: false, maxWorkloads: 2).get()
        let duplicate = refusal(
            state.reserve(name: "svc", namespace: "default", allowDuplicates: false, maxWorkloads: 2))
        #expect(
            duplicate?.contains("already running") == true && duplicate?.contains("allow_duplicate_workloads") == true)
        let otherNamespace = state.reserve(name: "svc", namespace: "other", allowDuplicates: false, maxWorkloads: 2)
        let overLimit = refusal(state.reserve(name: "x", namespace: "default", allowDuplicates: true, maxWorkloads: 2))
        #expect((try? otherNamespace.get()) != nil && overLimit?.contains("max_workloads") == true)
        state.release(try otherNamespace.get())

        // Accepted: the workload counts itself and its place ends (it is not counted twice).
        _ = state.accepted(record("w1", name: "svc"), reservation: first, persist: true)
        let second = state.reserve(name: "y", namespace: "default", allowDuplicates: false, maxWorkloads: 2)
        #expect((try? second.get()) != nil)
        let full = refusal(state.reserve(name: "z", namespace: "default", allowDuplicates: false, maxWorkloads: 2))
        #expect(full?.contains("max_workloads") == true)
        // Releasing an accepted place changes nothing; the duplicate is now the running workload.
        state.release(first)
        let stillDuplicate = refusal(
            state.reserve(name: "svc", namespace: "default", allowDuplicates: false, maxWorkloads: 9))
        #expect(stillDuplicate?.contains("already running") == true)
    }

    @Test func threeMissedPingsEndTheWorkload() {
        var state = NodeState(policy: Self.policy)
        _ = state.accepted(record("w"), persist: true)
        _ = state.assigned("w", agent: "a")
        _ = state.started("w")
        let firstTwo = [state.pinged("w", ok: false), state.pinged("w", ok: false)]
        #expect(firstTwo == [false, false] && state.entries["w"]?.healthy == false)
        let answered = state.pinged("w", ok: true)
        #expect(!answered && state.entries["w"]?.missedPings == 0)
        let threeMore = [state.pinged("w", ok: false), state.pinged("w", ok: false), state.pinged("w", ok: false)]
        #expect(threeMore == [false, false, true])
    }
}

/// The journal on disk: records written whole with mode 0600, secrets sealed, replaced records dropped.
@Suite struct WorkloadJournalTests {
    @Test func recordsSurviveWithSecretsSealed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let xkey = NKeyPair.generate(.curve)
        let journal = WorkloadJournal(directory: directory, xkey: xkey, logger: .init(label: "t"))
        var record = NodeStateTests().record("w1")
        record.request.hostServicesConfig = HostServicesConfig(
            natsURL: "nats://127.0.0.1:4222", natsUserSeed: "SUSECRET")
        var restarted = NodeStateTests().record("w2")
        restarted.replaces = "w1"
        try await journal.commit([.save(record), .save(NodeStateTests().record("w3"))])
        try await journal.commit([.save(restarted)])

        let text = try String(contentsOfFile: directory + "/w1.json", encoding: .utf8)
        #expect(!text.contains("SUSECRET") && text.contains("sealed_host_services_config"))
        let mode = try FileManager.default.attributesOfItem(atPath: directory + "/w1.json")[.posixPermissions] as? Int
        #expect(mode == 0o600)

        // w1 was replaced by w2 (an essential restart cut short): only w2 comes back, and w1's file goes.
        let loaded = await journal.load()
        #expect(loaded.map(\.id) == ["w2", "w3"])
        #expect(!FileManager.default.fileExists(atPath: directory + "/w1.json"))

        // A file that is not a record is moved aside, not fatal.
        try "{not json".write(toFile: directory + "/bad.json", atomically: true, encoding: .utf8)
        try await journal.commit([.delete(id: "w3")])
        #expect(await journal.load().map(\.id) == ["w2"])
        #expect(FileManager.default.fileExists(atPath: directory + "/bad.json.unreadable"))

        // Sealed to this node's xkey: the seed comes back.
        var sealed = record
        sealed.id = "w4"
        try await journal.commit([.save(sealed)])
        #expect(await journal.load().first { $0.id == "w4" }?.request.hostServicesConfig?.natsUserSeed == "SUSECRET")
    }
}
