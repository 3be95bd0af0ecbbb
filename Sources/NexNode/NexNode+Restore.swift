import Foundation
import NexModels

/// Durable workloads: after a restart or a crash the node starts the workloads it had recorded, under
/// their ids, names, namespaces and issuers, so INFO, WPING, events and the issuer's stop work as before.
extension NexNode {
    /// A recorded workload that passed the checks and holds its place, waiting to be started.
    struct PendingRestore: Sendable {
        var record: WorkloadRecord
        var deploy: ValidatedDeploy
        var reservation: NodeState.Reservation
    }

    /// The first step of a restart, before the node takes deploys: every record goes through the checks a
    /// deploy makes (as of the time it was accepted) and holds its place, so a deploy arriving meanwhile sees
    /// it (a duplicate, a slot under `max_workloads`). A record that no longer passes is dropped with the reason.
    func reserveRecordedWorkloads() async -> [PendingRestore] {
        guard config.persistWorkloads, let runtime, let journal = runtime.manager.journal else { return [] }
        var pending: [PendingRestore] = []
        for record in await journal.load() {
            var validator = DeployValidator(config: config, xkey: xkey)
            let acceptedAt = Int64(record.acceptedAt.timeIntervalSince1970)
            validator.now = { acceptedAt }
            let refusal: NexError
            switch validator.validate(record.request) {
            case .failure(let r): refusal = r
            case .success(let valid):
                switch await runtime.manager.reserve(name: record.name, namespace: record.namespace) {
                case .failure(let r): refusal = r
                case .success(let reservation):
                    pending.append(PendingRestore(record: record, deploy: valid, reservation: reservation))
                    continue
                }
            }
            await forget(record, journal: journal)
            report(record, .failure(refusal))
        }
        return pending
    }

    /// Starts the reserved workloads, one after the other, under their ids, names, namespaces and issuers.
    func restoreWorkloads(_ pending: [PendingRestore]) async {
        guard let runtime, let journal = runtime.manager.journal, !pending.isEmpty else { return }
        logger.info("starting recorded workloads", metadata: ["count": "\(pending.count)"])
        for item in pending {
            report(item.record, await restore(item, runtime: runtime, journal: journal))
        }
    }

    private func report(_ record: WorkloadRecord, _ result: Result<RunResponse, NexError>) {
        switch result {
        case .success:
            logger.info(
                "recorded workload started",
                metadata: ["nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)"])
        case .failure(let refusal):
            logger.error(
                "recorded workload did not start",
                metadata: [
                    "nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)", "reason": "\(refusal)",
                    "record": "\(refusal.isTransient ? "kept for the next start" : "removed")",
                ])
        }
    }

    private func restore(_ item: PendingRestore, runtime: NodeRuntime, journal: WorkloadJournal) async -> Result<
        RunResponse, NexError
    > {
        let record = item.record
        let result: Result<RunResponse, NexError>
        do {
            let artifact = try await ArtifactFetcher(client: client, directory: home + "/artifacts", logger: logger)
                .restore(
                    record.request.location, hash: item.deploy.hash, workloadID: record.id,
                    maxBytes: config.nodeLimits.maxWorkloadBytes)
            result = await runtime.manager.start(
                item.deploy, record: record, reservation: item.reservation, artifactPath: artifact.path,
                persist: true, alreadyRecorded: true)
        } catch {
            await runtime.manager.release(item.reservation)
            result = .failure(error)
        }
        // The manager keeps the record of a start that failed for a reason that may pass (no agent in time, a
        // shutdown); what is refused for good (today's limits or sandbox, an artifact gone or changed, a drain)
        // goes.
        switch result {
        case .success: break
        case .failure(let refusal) where refusal.isTransient:
            if await runtime.manager.isDraining { await forget(record, journal: journal) }
        case .failure:
            await forget(record, journal: journal)
        }
        return result
    }

    private func forget(_ record: WorkloadRecord, journal: WorkloadJournal) async {
        do { try await journal.commit([.delete(id: record.id)]) } catch {
            logger.error(
                "cannot remove a workload record", metadata: ["nex.workload_id": "\(record.id)", "error": "\(error)"])
        }
    }
}
