import Foundation
import NexModels

/// One workload's whole life as a plain value: its supervisor feeds it what happened (an ``Event``) and
/// carries out the one ``Action`` it returns, whose outcome is the next event. Nothing here does I/O, so
/// unit tests drive every path without processes.
///
/// The journal rules hold by construction, because every record write is an action this value asks for:
/// - a record exists exactly when the node will run the workload after a restart: it is saved before the
///   workload is handed to an agent, and deleted when the workload ends for good or fails to start;
/// - a deployer is never told "failed" about a workload that will run: a start cut short keeps its record only
///   when it was a replay (or confirmed), and then the failure says it is transient.
///
/// Work that takes a while (taking an agent, the agent's deploy answer, a health ping, a restart's backoff) is
/// *in flight*: the supervisor runs it beside its event loop, so a stop or an exit is handled while it waits.
/// Its outcome arrives later as an event, which may find the workload already stopping; an agent taken for a
/// workload that was stopped meanwhile is handed back for destruction (``Action/destroyStray(agent:)``).
struct WorkloadLifecycle: Sendable {
    /// What the node's listings show of the workload.
    enum Status: Sendable, Equatable {
        /// Accepted; its record is being written or it waits for an agent.
        case starting
        /// An agent has the deploy and has not answered yet (its output is already the workload's).
        case launching(agent: String)
        case running(agent: String)
        /// An essential workload waits out its backoff before it starts again (under a new id).
        case restarting
        /// A stop, a failed start or an exit is being carried out.
        case stopping(agent: String?)

        var agent: String? {
            switch self {
            case .launching(let a), .running(let a): a
            case .stopping(let a): a
            case .starting, .restarting: nil
            }
        }
    }

    /// A stop asked of the workload.
    struct Stop: Sendable, Equatable {
        /// Removes the record (the issuer's stop, a lame-duck drain); a node shutdown keeps a confirmed one.
        var forget: Bool
        var code: Int
        var message: String
    }

    enum Event: Sendable, Equatable {
        /// The supervisor starts.
        case begin
        /// The journal write asked for by ``Action/commit(_:)`` ended.
        case committed(ok: Bool)
        case agentTaken(agent: String)
        case noAgent(reason: String)
        case deployed(agent: String)
        case deployFailed(agent: String, code: NexError.Code, reason: String)
        case subscribed
        case subscribeFailed(reason: String)
        /// The workload's process ended by itself (code -1: its agent died). `newID`: the id a restart runs
        /// under; nil when the node restarts nothing any more (lame duck, shutting down).
        case exited(WorkloadExited, newID: String?)
        case stopRequested(Stop)
        /// Time to check that the agent answers.
        case healthCheck
        /// The ping's outcome. `newID` as for ``exited(_:newID:)`` (when this was the third missed).
        case pinged(agent: String, ok: Bool, newID: String?)
        case backoffEnded
        /// A step without an outcome was carried out.
        case done
    }

    /// The end of one run: what its supervisor releases.
    struct TearDown: Sendable, Equatable {
        /// The id the run's host services and logs went by.
        var workloadID: String
        /// The run's agent, destroyed (nil: it had none yet).
        var agent: String?
        /// Ask the agent to stop the workload first (SIGTERM, then SIGKILL), rather than just destroying it.
        var stopAgent: Bool
        /// The workload is gone for good: its artifact copy goes too.
        var removeArtifact: Bool
    }

    enum Action: Sendable, Equatable {
        /// Write `changes` to the journal (nothing to write: ok at once) → ``Event/committed(ok:)``.
        case commit([JournalChange])
        /// In flight: take a warm agent → ``Event/agentTaken(agent:)`` or ``Event/noAgent(reason:)``.
        case takeAgent
        /// In flight: give the artifact and the deploy to `agent` → ``Event/deployed(agent:)`` or
        /// ``Event/deployFailed(agent:code:reason:)``.
        case deploy(agent: String)
        /// Subscribe a function's triggers → ``Event/subscribed`` or ``Event/subscribeFailed(reason:)``.
        case subscribe(agent: String)
        /// The workload runs: announce it, and tell its deployer when one waits → ``Event/done``.
        case confirm(answerDeployer: Bool)
        /// Tell the deployer the start failed → ``Event/done``.
        case answer(NexError)
        /// Release a run (cancelling what is in flight) → ``Event/done``.
        case tearDown(TearDown)
        /// Destroy an agent taken for a workload that was stopped meanwhile → ``Event/done``.
        case destroyStray(agent: String)
        /// Announce that a run of `record` ended → ``Event/done``.
        case announceEnded(WorkloadRecord, code: Int, message: String)
        /// Log what the node decided about the workload, which nobody waits to hear → ``Event/done``.
        case warn(String)
        /// In flight: ping the agent → ``Event/pinged(agent:ok:newID:)``.
        case ping(agent: String)
        /// In flight: wait out a restart's backoff → ``Event/backoffEnded``.
        case backOff(Duration)
        /// Nothing to do until something happens.
        case wait
        /// The workload is gone and nothing is in flight: the supervisor ends.
        case finish
    }

    private enum Phase: Sendable, Equatable {
        case idle
        case recording
        case waitingForAgent
        case deploying(agent: String)
        case subscribing(agent: String)
        case running(agent: String)
        /// The restart's record (the old one's delete) is being written.
        case recordingRestart(next: WorkloadRecord, delay: Duration, exit: WorkloadExited)
        /// A failed restart's count is being written.
        case recordingRetry(delay: Duration, reason: String)
        case backingOff
        /// Its ending's steps are under way, or done and waiting for what is still in flight.
        case ended
    }

    /// The run's record: its id changes with every essential restart.
    private(set) var record: WorkloadRecord
    /// When this run of the workload began (uptimes).
    private(set) var since: Date
    /// Whether the record is kept in the journal (autostart workloads are not).
    let persisted: Bool
    /// Whether the deployer was told it runs (or its record came from the journal, or it is an essential
    /// restart): a shutdown keeps the record only then.
    private(set) var confirmed: Bool
    /// Its agent stopped answering this many pings in a row.
    private(set) var missedPings = 0
    /// Whether every journal write of its ending succeeded (what an issuer's stop is answered with).
    private(set) var endingRecorded = true

    let policy: RestartPolicy
    private var phase = Phase.idle
    /// The record came from the journal and has not run yet: a start that fails for a reason that may pass
    /// keeps it.
    private var replayed: Bool
    /// This run is an essential restart: its failure is another failed run, retried with backoff.
    private var restarting = false
    private var deployerWaiting = true
    /// The current run's agent, until it is torn down.
    private var agent: String? {
        didSet { if let agent { lastAgent = agent } }
    }
    /// The last run's agent: an ending workload is still found by it (its last log lines).
    private var lastAgent: String?
    /// An exit the agent reported before its deploy answer arrived (a workload that ends at once).
    private var earlyExit: (report: WorkloadExited, newID: String?)?
    /// Steps of an ending or a restart, handed out one per ``Event/done``.
    private var steps: [Action] = []
    /// Work in flight whose outcome has not arrived.
    private var inFlight = 0
    /// The ending kept the record (a shutdown's stop, or a replay that may start later): a stop that forgets,
    /// arriving after, still removes it.
    private var keptRecord = false

    /// A workload accepted now. `alreadyRecorded`: a replay of a journal record (which is not written again,
    /// and is kept when its start fails for a reason that may pass).
    init(record: WorkloadRecord, persisted: Bool, alreadyRecorded: Bool, policy: RestartPolicy, now: Date = Date()) {
        self.record = record
        self.since = now
        self.persisted = persisted
        self.confirmed = alreadyRecorded
        self.replayed = alreadyRecorded
        self.policy = policy
    }

    var status: Status {
        switch phase {
        case .idle, .recording, .waitingForAgent: .starting
        case .deploying(let a), .subscribing(let a): .launching(agent: a)
        case .running(let a): .running(agent: a)
        case .recordingRestart, .recordingRetry, .backingOff: .restarting
        case .ended: .stopping(agent: agent ?? lastAgent)
        }
    }

    /// Whether it counts as on the node (listings, duplicates, limits): every status but stopping.
    var isPresent: Bool {
        if case .stopping = status { return false }
        return true
    }

    /// Whether its agent answered the last ping.
    var healthy: Bool { missedPings == 0 }

    mutating func handle(_ event: Event, now: Date = Date()) -> Action {
        switch event {
        case .begin:
            guard phase == .idle else { return nextStep() }
            if persisted && !replayed {
                phase = .recording
                return .commit([.save(record)])
            }
            phase = .waitingForAgent
            return launch(.takeAgent)

        case .committed(let ok):
            return committed(ok: ok, now: now)

        case .agentTaken(let taken):
            inFlight -= 1
            guard phase == .waitingForAgent else { return .destroyStray(agent: taken) }
            agent = taken
            earlyExit = nil
            phase = .deploying(agent: taken)
            return launch(.deploy(agent: taken))

        case .noAgent(let reason):
            inFlight -= 1
            guard phase == .waitingForAgent else { return nextStep() }
            return startFailed(.unavailable, "no agent available: \(reason)")

        case .deployed(let from):
            inFlight -= 1
            guard phase == .deploying(agent: from) else { return nextStep() }
            phase = .subscribing(agent: from)
            return .subscribe(agent: from)

        case .deployFailed(let from, let code, let reason):
            inFlight -= 1
            guard phase == .deploying(agent: from) else { return nextStep() }
            return startFailed(code, reason)

        case .subscribed:
            guard case .subscribing(let on) = phase else { return nextStep() }
            phase = .running(agent: on)
            confirmed = true
            replayed = false
            restarting = false
            missedPings = 0
            defer { deployerWaiting = false }
            return .confirm(answerDeployer: deployerWaiting)

        case .subscribeFailed(let reason):
            guard case .subscribing = phase else { return nextStep() }
            return startFailed(.unavailable, "cannot subscribe to the trigger subjects: \(reason)")

        case .exited(let report, let newID):
            switch phase {
            case .deploying:
                earlyExit = (report, newID)
                return .wait
            case .running:
                return exited(report, newID: newID, now: now)
            default:
                return nextStep()
            }

        case .stopRequested(let stop):
            return stopRequested(stop)

        case .healthCheck:
            // One ping at a time: a check while one is out waits for its answer (or its timeout).
            guard case .running(let on) = phase, inFlight == 0 else { return nextStep() }
            return launch(.ping(agent: on))

        case .pinged(let from, let ok, let newID):
            inFlight -= 1
            guard phase == .running(agent: from) else { return nextStep() }
            missedPings = ok ? 0 : missedPings + 1
            return missedPings >= 3 ? agentSilent(newID: newID, now: now) : .wait

        case .backoffEnded:
            inFlight -= 1
            guard phase == .backingOff else { return nextStep() }
            phase = .waitingForAgent
            restarting = true
            since = now
            return launch(.takeAgent)

        case .done:
            if steps.isEmpty, case .running = phase, let early = earlyExit {
                earlyExit = nil
                return exited(early.report, newID: early.newID, now: now)
            }
            return nextStep()
        }
    }

    // MARK: Steps

    /// Work in flight: counted until its outcome arrives.
    private mutating func launch(_ action: Action) -> Action {
        inFlight += 1
        return action
    }

    /// The next step of an ending or a restart; otherwise waiting, or the end once nothing is in flight.
    private mutating func nextStep() -> Action {
        if !steps.isEmpty {
            let step = steps.removeFirst()
            switch step {
            case .backOff, .takeAgent, .deploy, .ping: inFlight += 1
            default: break
            }
            return step
        }
        return phase == .ended && inFlight == 0 ? .finish : .wait
    }

    /// Ends the workload for good with `steps`.
    private mutating func end(_ steps: [Action]) -> Action {
        phase = .ended
        self.steps = steps
        return nextStep()
    }

    private mutating func committed(ok: Bool, now: Date) -> Action {
        switch phase {
        case .recording:
            guard ok else {
                deployerWaiting = false
                return end([
                    .answer(
                        NexError(
                            .storage,
                            "cannot record the workload: check that the node's resource directory is writable"))
                ])
            }
            phase = .waitingForAgent
            return launch(.takeAgent)

        case .recordingRestart(let next, let delay, let exit):
            let old = record
            let tearDown = TearDown(workloadID: old.id, agent: agent, stopAgent: false, removeArtifact: !ok)
            agent = nil
            guard ok else {
                // Not recorded, so not run: the node would not run it after its own restart either.
                return end([
                    .tearDown(tearDown),
                    .commit(persisted ? [.delete(id: next.id), .delete(id: old.id)] : []),
                    .announceEnded(
                        old, code: exit.code,
                        message: exit.message + " (not restarted: the workload journal cannot be written)"),
                ])
            }
            record = next
            since = now
            confirmed = true
            phase = .backingOff
            steps = [
                .tearDown(tearDown),
                .announceEnded(old, code: exit.code, message: exit.message),
                .warn("restarting essential workload (retry \(next.retryCount), after \(delay))"),
                .backOff(delay),
            ]
            return nextStep()

        case .recordingRetry(let delay, let reason):
            let tearDown = TearDown(workloadID: record.id, agent: agent, stopAgent: false, removeArtifact: !ok)
            agent = nil
            guard ok else {
                return end([
                    .tearDown(tearDown),
                    .commit(persisted ? [.delete(id: record.id)] : []),
                    .warn(reason + " (not tried again: the workload journal cannot be written)"),
                ])
            }
            phase = .backingOff
            steps = [
                .tearDown(tearDown),
                .warn("essential workload could not restart (\(reason)); trying again after \(delay)"),
                .backOff(delay),
            ]
            return nextStep()

        default:
            // A write of an ending: its outcome is what the issuer's stop is answered with.
            if !ok { endingRecorded = false }
            return nextStep()
        }
    }

    /// A start (or a restart) that could not be carried out.
    private mutating func startFailed(_ code: NexError.Code, _ reason: String) -> Action {
        // The failed run's exit, if it reported one, is not the next run's.
        earlyExit = nil
        let tearDown = TearDown(workloadID: record.id, agent: agent, stopAgent: false, removeArtifact: true)
        if restarting, policy.allows(retry: record.retryCount) {
            // Another failed run: counted and recorded before it is tried again.
            let delay = policy.delay(retry: record.retryCount)
            record.retryCount += 1
            record.request.retryCount = record.retryCount
            phase = .recordingRetry(delay: delay, reason: reason)
            return .commit(persisted ? [.save(record)] : [])
        }
        agent = nil
        // A replayed record stays when its start fails for a reason that may pass; the caller tries it again.
        let keep = replayed && (code == .unavailable || code == .storage)
        keptRecord = keep && persisted
        var steps: [Action] = [
            .tearDown(tearDown), .commit(persisted && !keep ? [.delete(id: record.id)] : []),
        ]
        if deployerWaiting {
            deployerWaiting = false
            steps.append(
                .answer(
                    keep
                        ? NexError(code, reason + " (the record is kept for the next start)", isTransient: true)
                        : NexError(code, reason)))
        } else {
            steps.append(.warn("essential workload could not restart: \(reason)"))
        }
        return end(steps)
    }

    /// The workload's process ended by itself while it ran: it ends, or an essential one restarts.
    private mutating func exited(_ report: WorkloadExited, newID: String?, now: Date) -> Action {
        let old = record
        guard old.essential, report.code != 0, let newID, policy.allows(retry: old.retryCount) else {
            let tearDown = TearDown(workloadID: old.id, agent: agent, stopAgent: false, removeArtifact: true)
            agent = nil
            return end([
                .commit(persisted ? [.delete(id: old.id)] : []),
                .tearDown(tearDown),
                .announceEnded(old, code: report.code, message: report.message),
            ])
        }
        var next = old
        next.id = newID
        next.retryCount = old.retryCount + 1
        next.replaces = old.id
        next.request.retryCount = next.retryCount
        next.request.retriedAt = ISO8601DateFormatter().string(from: now)
        phase = .recordingRestart(next: next, delay: policy.delay(retry: old.retryCount), exit: report)
        // Saved before the old record goes: a crash in between leaves both, and the journal keeps the new one.
        return .commit(persisted ? [.save(next), .delete(id: old.id)] : [])
    }

    /// Three pings in a row went unanswered: the workload counts as exited.
    private mutating func agentSilent(newID: String?, now: Date) -> Action {
        exited(
            WorkloadExited(workloadID: record.id, code: -1, message: "agent stopped answering pings"), newID: newID,
            now: now)
    }

    private mutating func stopRequested(_ stop: Stop) -> Action {
        let hadRun: Bool
        switch phase {
        case .waitingForAgent, .deploying, .subscribing, .backingOff: hadRun = false
        case .running: hadRun = true
        case .ended:
            // Already ending (this stop waits for that). One that forgets still removes a record kept.
            if stop.forget, keptRecord {
                keptRecord = false
                steps.append(.commit([.delete(id: record.id)]))
            }
            return nextStep()
        case .idle, .recording, .recordingRestart, .recordingRetry:
            // Between steps that are never interrupted: not reached.
            return nextStep()
        }
        // A shutdown keeps a record only when its deployer was told it runs.
        let keep = !stop.forget && confirmed
        keptRecord = keep && persisted
        let tearDown = TearDown(
            workloadID: record.id, agent: agent, stopAgent: agent != nil, removeArtifact: true)
        agent = nil
        earlyExit = nil
        var steps: [Action] = [.tearDown(tearDown), .commit(persisted && !keep ? [.delete(id: record.id)] : [])]
        if deployerWaiting {
            deployerWaiting = false
            steps.append(
                .answer(
                    keep
                        ? NexError(
                            .unavailable, "the node stopped before the workload started; it starts with the node",
                            isTransient: true)
                        : NexError(.unavailable, "the workload was stopped before it started (\(stop.message))")))
        }
        if hadRun { steps.append(.announceEnded(record, code: stop.code, message: stop.message)) }
        return end(steps)
    }
}
