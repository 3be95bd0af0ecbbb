import Foundation
import NKeys
import NexModels
import Testing

@testable import NexNode

/// One workload's life driven by events alone, as its supervisor would: no processes, no server.
@Suite struct WorkloadLifecycleTests {
    typealias Action = WorkloadLifecycle.Action
    static let policy = RestartPolicy(
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

    func lifecycle(_ record: WorkloadRecord, persist: Bool = true, replayed: Bool = false) -> WorkloadLifecycle {
        WorkloadLifecycle(record: record, persisted: persist, alreadyRecorded: replayed, policy: Self.policy)
    }

    /// Carries out each step as a supervisor would (every write succeeding unless `commitsSucceed` is false)
    /// until the workload waits, ends or starts work in flight; every action handed out, in order.
    func steps(_ w: inout WorkloadLifecycle, from first: Action, commitsSucceed: Bool = true) -> [Action] {
        var actions: [Action] = []
        var action = first
        while true {
            actions.append(action)
            switch action {
            case .wait, .finish, .takeAgent, .deploy, .ping, .backOff: return actions
            case .commit: action = w.handle(.committed(ok: commitsSucceed))
            case .subscribe: action = w.handle(.subscribed)
            default: action = w.handle(.done)
            }
        }
    }

    /// ``steps(_:from:commitsSucceed:)`` from what `event` returns.
    func steps(_ w: inout WorkloadLifecycle, after event: WorkloadLifecycle.Event, commitsSucceed: Bool = true)
        -> [Action]
    {
        let first = w.handle(event)
        return steps(&w, from: first, commitsSucceed: commitsSucceed)
    }

    /// A workload that got through its start on `agent`.
    func running(_ record: WorkloadRecord, agent: String = "a1", persist: Bool = true) -> WorkloadLifecycle {
        var w = lifecycle(record, persist: persist)
        let start = steps(&w, after: .begin)
        #expect(start.last == .takeAgent)
        expect(&w, .agentTaken(agent: agent), gives: .deploy(agent: agent))
        let run = steps(&w, after: .deployed(agent: agent))
        #expect(run == [.subscribe(agent: agent), .confirm(answerDeployer: true), .wait])
        #expect(w.status == .running(agent: agent))
        return w
    }

    /// Feeds `event` and expects `expected` back.
    func expect(
        _ w: inout WorkloadLifecycle, _ event: WorkloadLifecycle.Event, gives expected: Action,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let action = w.handle(event)
        #expect(action == expected, sourceLocation: sourceLocation)
    }

    func tearDown(_ id: String, agent: String?, stopAgent: Bool = false, removeArtifact: Bool = true) -> Action {
        .tearDown(.init(workloadID: id, agent: agent, stopAgent: stopAgent, removeArtifact: removeArtifact))
    }

    @Test func backoffDoublesUpToTheCap() {
        let delays = (0..<6).map { Self.policy.delay(retry: $0) }
        #expect(delays.map { $0.components.attoseconds / 1_000_000_000_000_000 } == [100, 200, 400, 800, 0, 0])
        #expect(delays[4] == .seconds(1) && delays[5] == .seconds(1))
    }

    @Test func theRecordIsWrittenBeforeAnAgentIsTaken() {
        var w = lifecycle(record("w1"))
        expect(&w, .begin, gives: .commit([.save(record("w1"))]))
        #expect(w.status == .starting && w.isPresent)
        expect(&w, .committed(ok: true), gives: .takeAgent)
        expect(&w, .agentTaken(agent: "a1"), gives: .deploy(agent: "a1"))
        #expect(w.status == .launching(agent: "a1"))
        // Not persisted (autostart), or replayed from the journal: nothing is written.
        var autostart = lifecycle(record("w2"), persist: false)
        var replay = lifecycle(record("w3"), replayed: true)
        expect(&autostart, .begin, gives: .takeAgent)
        expect(&replay, .begin, gives: .takeAgent)
        _ = running(record("w4"))
    }

    @Test func aRecordThatCannotBeWrittenRefusesTheDeploy() {
        var w = lifecycle(record("w1"))
        let actions = steps(&w, after: .begin, commitsSucceed: false)
        guard case .answer(let refusal) = actions.dropLast().last else {
            Issue.record("expected an answer, got \(actions)")
            return
        }
        #expect(refusal.code == .storage && actions.last == .finish && actions.count == 3)
    }

    /// The race of the old manager: a stop that lands while the start awaits its agent is not overwritten,
    /// and the agent that comes afterwards is destroyed.
    @Test func aStopDuringTheStartWins() {
        var w = lifecycle(record("w1"))
        _ = steps(&w, after: .begin)
        let stop = WorkloadLifecycle.Stop(forget: true, code: 0, message: "stopped by its issuer")
        let stopped = steps(&w, after: .stopRequested(stop))
        #expect(Array(stopped.prefix(2)) == [tearDown("w1", agent: nil), .commit([.delete(id: "w1")])])
        guard case .answer(let refusal) = stopped[2] else {
            Issue.record("the deployer was not answered: \(stopped)")
            return
        }
        #expect(!refusal.isTransient && refusal.message.contains("stopped before it started"))
        // The agent taken meanwhile is still on its way: the workload ends only once it is destroyed.
        #expect(stopped.last == .wait && !w.isPresent)
        expect(&w, .agentTaken(agent: "a1"), gives: .destroyStray(agent: "a1"))
        expect(&w, .done, gives: .finish)

        // A stop while the agent holds the deploy: the agent is asked to stop, the answer finds it stopping.
        var w2 = lifecycle(record("w2"))
        _ = steps(&w2, after: .begin)
        _ = w2.handle(.agentTaken(agent: "a2"))
        let stopped2 = steps(&w2, after: .stopRequested(stop))
        #expect(stopped2.first == tearDown("w2", agent: "a2", stopAgent: true) && stopped2.last == .wait)
        expect(&w2, .stopRequested(stop), gives: .wait)  // a second stop finds nothing to do
        expect(&w2, .deployed(agent: "a2"), gives: .finish)
        #expect(w2.endingRecorded)
    }

    @Test func anExitBeforeTheDeployAnswerIsKeptForAfterIt() {
        var w = lifecycle(record("w1"))
        _ = steps(&w, after: .begin)
        _ = w.handle(.agentTaken(agent: "a1"))
        expect(&w, .exited(exit(3), newID: "x"), gives: .wait)
        let run = steps(&w, after: .deployed(agent: "a1"))
        #expect(
            run == [
                .subscribe(agent: "a1"), .confirm(answerDeployer: true), .commit([.delete(id: "w1")]),
                tearDown("w1", agent: "a1"), .announceEnded(record("w1"), code: 3, message: "exit 3"), .finish,
            ])
    }

    @Test func anEssentialWorkloadRestartsUnderANewIdWithItsCount() {
        var w = running(record("w1", essential: true))
        let restart = steps(&w, after: .exited(exit(1), newID: "w2"))
        guard case .commit(let changes) = restart.first, case .save(let new) = changes.first else {
            Issue.record("expected the new record first, got \(restart)")
            return
        }
        #expect(new.id == "w2" && new.retryCount == 1 && new.replaces == "w1" && new.request.retryCount == 1)
        // The new record is saved before the old one is deleted; the old run is released, its end announced.
        #expect(changes == [.save(new), .delete(id: "w1")])
        #expect(restart[1] == tearDown("w1", agent: "a1", removeArtifact: false))
        #expect(restart[2] == .announceEnded(record("w1", essential: true), code: 1, message: "exit 1"))
        #expect(restart.last == .backOff(.milliseconds(100)))
        #expect(w.status == .restarting && w.record.id == "w2" && w.isPresent)
        expect(&w, .backoffEnded, gives: .takeAgent)
        #expect(w.status == .starting)

        // A stop during the backoff cancels the restart: the backoff's end then finds nothing to do.
        var stopped = running(record("w1", essential: true))
        _ = steps(&stopped, after: .exited(exit(1), newID: "w2"))
        let stop = steps(&stopped, after: .stopRequested(.init(forget: true, code: 0, message: "x")))
        #expect(stop == [tearDown("w2", agent: nil), .commit([.delete(id: "w2")]), .wait])
        expect(&stopped, .backoffEnded, gives: .finish)
    }

    @Test func noRestartForCleanExitsLameDuckOrAfterTheLimit() {
        // Lame duck (or a node stopping) restarts nothing: the exit carries no id for a restart.
        for (code, newID, retry) in [(0, "n", 0), (1, nil, 0), (1, "n", 3)] as [(Int, String?, Int)] {
            var w = running(record("w", essential: true, retry: retry))
            let ended = steps(&w, after: .exited(exit(code), newID: newID))
            #expect(ended.first == .commit([.delete(id: "w")]) && ended.last == .finish, "code \(code), retry \(retry)")
        }
    }

    /// Autostart workloads are never recorded, not even when an essential one restarts.
    @Test func unrecordedWorkloadsStayUnrecorded() {
        var w = running(record("w", essential: true), persist: false)
        let restart = steps(&w, after: .exited(exit(1), newID: "n"))
        #expect(restart.first == .commit([]) && restart.last == .backOff(.milliseconds(100)))
        let stop = steps(&w, after: .stopRequested(.init(forget: true, code: 0, message: "x")))
        #expect(
            stop.contains(.commit([])) && !stop.contains { if case .commit(let c) = $0 { !c.isEmpty } else { false } })
    }

    @Test func aShutdownKeepsTheRecordsAStopForgetsThem() {
        var forgotten = running(record("a", name: "a"))
        var kept = running(record("b", name: "b"))
        let stop = steps(&forgotten, after: .stopRequested(.init(forget: true, code: 0, message: "x")))
        let shutdown = steps(&kept, after: .stopRequested(.init(forget: false, code: 0, message: "y")))
        #expect(
            stop == [
                tearDown("a", agent: "a1", stopAgent: true), .commit([.delete(id: "a")]),
                .announceEnded(record("a", name: "a"), code: 0, message: "x"), .finish,
            ])
        #expect(shutdown[1] == .commit([]) && shutdown.last == .finish)
    }

    /// A record outlives a shutdown only when the node will run the workload again and its deployer was
    /// told it runs: a deploy cut short by the shutdown is answered with an error, so its record goes; a
    /// replayed record (answered "transient, kept") and an essential restart stay.
    @Test func aShutdownForgetsDeploysItCutShort() {
        let shutdown = WorkloadLifecycle.Stop(forget: false, code: 0, message: "node stopped")
        var new = lifecycle(record("new", name: "new"))
        _ = steps(&new, after: .begin)
        let newStop = steps(&new, after: .stopRequested(shutdown))
        var replayed = lifecycle(record("replayed", name: "replayed"), replayed: true)
        _ = steps(&replayed, after: .begin)
        let replayStop = steps(&replayed, after: .stopRequested(shutdown))
        var essential = running(record("essential", name: "essential", essential: true))
        _ = steps(&essential, after: .exited(exit(1), newID: "essential-2"))
        let essentialStop = steps(&essential, after: .stopRequested(shutdown))

        #expect(newStop[1] == .commit([.delete(id: "new")]))
        #expect(replayStop[1] == .commit([]) && essentialStop[1] == .commit([]))
        guard case .answer(let cutShort) = newStop[2], case .answer(let kept) = replayStop[2] else {
            Issue.record("the deployers were not answered: \(newStop), \(replayStop)")
            return
        }
        #expect(!cutShort.isTransient && kept.isTransient)
    }

    /// A replayed record stays when its start fails for a reason that may pass (and the caller is told it is
    /// transient); a refusal by the agent removes it.
    @Test func aReplayKeepsItsRecordOnlyForFailuresThatMayPass() {
        var noAgent = lifecycle(record("r1"), replayed: true)
        _ = steps(&noAgent, after: .begin)
        let kept = steps(&noAgent, after: .noAgent(reason: "none in time"))
        var refused = lifecycle(record("r2"), replayed: true)
        _ = steps(&refused, after: .begin)
        _ = refused.handle(.agentTaken(agent: "a"))
        let gone = steps(
            &refused, from: refused.handle(.deployFailed(agent: "a", code: .invalidRequest, reason: "bad")))
        #expect(kept[1] == .commit([]) && gone[1] == .commit([.delete(id: "r2")]))
        #expect(gone[0] == tearDown("r2", agent: "a"))
        guard case .answer(let transient) = kept[2], case .answer(let final) = gone[2] else {
            Issue.record("not answered: \(kept), \(gone)")
            return
        }
        #expect(transient.isTransient && transient.message.contains("kept") && !final.isTransient)
    }

    /// A stop that forgets, arriving while a shutdown's ending (which kept the record) waits for work in
    /// flight, still removes the record.
    @Test func aForgettingStopAfterAShutdownStillRemovesTheRecord() {
        var w = lifecycle(record("r"), replayed: true)
        _ = steps(&w, after: .begin)
        let shutdown = steps(&w, after: .stopRequested(.init(forget: false, code: 0, message: "node stopped")))
        #expect(shutdown[1] == .commit([]) && shutdown.last == .wait)
        let drain = steps(&w, after: .stopRequested(.init(forget: true, code: 0, message: "lame duck")))
        #expect(drain == [.commit([.delete(id: "r")]), .wait])
        // Only once: a third stop finds nothing more to remove.
        expect(&w, .stopRequested(.init(forget: true, code: 0, message: "again")), gives: .wait)
        expect(&w, .agentTaken(agent: "a"), gives: .destroyStray(agent: "a"))
        expect(&w, .done, gives: .finish)
    }

    /// An exit reported during a restart's deploy that then fails belongs to that run: the next run that
    /// starts is not ended by it.
    @Test func aFailedRunsEarlyExitDoesNotEndTheNextRun() {
        var w = running(record("e", essential: true))
        _ = steps(&w, after: .exited(exit(1), newID: "e2"))
        expect(&w, .backoffEnded, gives: .takeAgent)
        expect(&w, .agentTaken(agent: "a2"), gives: .deploy(agent: "a2"))
        expect(&w, .exited(exit(9), newID: "e3"), gives: .wait)
        let retry = steps(&w, after: .deployFailed(agent: "a2", code: .unavailable, reason: "gone"))
        #expect(retry.last == .backOff(.milliseconds(200)))
        expect(&w, .backoffEnded, gives: .takeAgent)
        expect(&w, .agentTaken(agent: "a3"), gives: .deploy(agent: "a3"))
        let run = steps(&w, after: .deployed(agent: "a3"))
        #expect(run == [.subscribe(agent: "a3"), .confirm(answerDeployer: false), .wait])
        #expect(w.status == .running(agent: "a3"))
    }

    /// A restart that could not be carried out is another failed run: retried with the next backoff while the
    /// policy allows, its record saved with the count; then it ends and its record goes.
    @Test func aFailedRestartIsRetriedUntilThePolicyEnds() {
        var w = running(record("e", name: "e", essential: true))
        _ = steps(&w, after: .exited(exit(1), newID: "e2"))
        var retries = 0
        while true {
            expect(&w, .backoffEnded, gives: .takeAgent)
            let after = steps(&w, after: .noAgent(reason: "none"))
            guard case .backOff(let delay) = after.last else {
                #expect(after.contains(.commit([.delete(id: "e2")])) && after.last == .finish)
                break
            }
            retries += 1
            #expect(delay == Self.policy.delay(retry: retries))
            #expect(w.record.retryCount == retries + 1 && after.first == .commit([.save(w.record)]))
        }
        // The exit was retry 1; the policy allows `maxRestarts` in all.
        #expect(retries == Self.policy.maxRestarts - 1)
    }

    /// A restart that cannot be recorded does not run (the node would not run it after its own restart).
    @Test func aRestartThatCannotBeRecordedEndsTheWorkload() {
        var w = running(record("e", essential: true))
        let actions = steps(&w, after: .exited(exit(1), newID: "e2"), commitsSucceed: false)
        guard case .announceEnded(_, _, let message) = actions.dropLast().last else {
            Issue.record("not announced: \(actions)")
            return
        }
        #expect(message.contains("not restarted") && actions.last == .finish && !w.endingRecorded)
    }

    @Test func duplicatesAndLimitsCountDeploysInFlight() throws {
        var places = DeployReservations()
        func refusal(_ result: Result<Reservation, NexError>) -> String? {
            if case .failure(let r) = result { r.message } else { nil }
        }
        func reserve(
            _ name: String, _ namespace: String = "default", present: [String] = [], counted: Int? = nil,
            duplicates: Bool = false
        ) -> Result<Reservation, NexError> {
            places.reserve(
                name: name, namespace: namespace, present: present, counted: counted ?? present.count,
                allowDuplicates: duplicates, maxWorkloads: 2)
        }
        let first = try reserve("svc").get()
        let duplicate = refusal(reserve("svc"))
        #expect(
            duplicate?.contains("already running") == true && duplicate?.contains("allow_duplicate_workloads") == true)
        let otherNamespace = reserve("svc", "other")
        let overLimit = refusal(reserve("x", duplicates: true))
        #expect((try? otherNamespace.get()) != nil && overLimit?.contains("max_workloads") == true)
        places.release(try otherNamespace.get())

        // Accepted: the workload counts itself and its place ends (it is not counted twice).
        places.release(first)
        let second = reserve("y", present: ["default/svc"])
        #expect((try? second.get()) != nil)
        let full = refusal(reserve("z", present: ["default/svc"]))
        #expect(full?.contains("max_workloads") == true)
        // The duplicate is now the running workload.
        places.release(try second.get())
        let stillDuplicate = refusal(reserve("svc", present: ["default/svc"]))
        #expect(stillDuplicate?.contains("already running") == true)
        // A copy that replaces the running one (left out of `present`) is no duplicate, but both count.
        let replacing = try reserve("svc", present: [], counted: 1).get()
        #expect(refusal(reserve("other", present: [], counted: 1))?.contains("max_workloads") == true)
        places.release(replacing)
    }

    @Test func threeMissedPingsEndTheWorkload() {
        var w = running(record("w"))
        func ping(_ ok: Bool) -> Action {
            expect(&w, .healthCheck, gives: .ping(agent: "a1"))
            // One ping at a time: a check while one is out sends none.
            expect(&w, .healthCheck, gives: .wait)
            return w.handle(.pinged(agent: "a1", ok: ok, newID: nil))
        }
        let firstTwo = [ping(false), ping(false)]
        #expect(firstTwo == [.wait, .wait] && !w.healthy)
        let answered = ping(true)
        #expect(answered == .wait && w.healthy && w.missedPings == 0)
        let twoMore = [ping(false), ping(false)]
        #expect(twoMore == [.wait, .wait])
        let silent = ping(false)
        let third = steps(&w, from: silent)
        #expect(third.first == .commit([.delete(id: "w")]) && third.last == .finish)
        guard case .announceEnded(_, let code, let message) = third.dropLast().last else {
            Issue.record("not announced: \(third)")
            return
        }
        #expect(code == -1 && message == "agent stopped answering pings")
    }
}

/// The journal on disk: records written whole with mode 0600, secrets sealed, replaced records dropped.
@Suite struct WorkloadJournalTests {
    @Test func recordsSurviveWithSecretsSealed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let xkey = NKeyPair.generate(.curve)
        let journal = WorkloadJournal(directory: directory, xkey: xkey, logger: .init(label: "t"))
        var record = WorkloadLifecycleTests().record("w1")
        record.request.hostServicesConfig = HostServicesConfig(
            natsURL: "nats://127.0.0.1:4222", natsUserSeed: "SUSECRET")
        var restarted = WorkloadLifecycleTests().record("w2")
        restarted.replaces = "w1"
        try await journal.commit([.save(record), .save(WorkloadLifecycleTests().record("w3"))])
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
