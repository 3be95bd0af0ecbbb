import Foundation
import NexModels

/// Durable workloads: after a restart or a crash the node starts the workloads it had recorded, under
/// their ids, names, namespaces and issuers, so INFO, WPING, events and the issuer's stop work as before.
extension NexNode {
    /// Starts every recorded workload again, one after the other (each through the checks a deploy makes,
    /// as of the time it was accepted). A record that no longer passes is dropped with the reason logged.
    func restoreWorkloads() async {
        guard config.persistWorkloads, let runtime, let journal = runtime.manager.journal else { return }
        let records = await journal.load()
        guard !records.isEmpty else { return }
        logger.info("starting recorded workloads", metadata: ["count": "\(records.count)"])
        for record in records {
            switch await restore(record, runtime: runtime, journal: journal) {
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
    }

    private func restore(_ record: WorkloadRecord, runtime: NodeRuntime, journal: WorkloadJournal) async -> Result<
        RunResponse, DeployRefusal
    > {
        var validator = DeployValidator(config: config, xkey: xkey)
        let acceptedAt = Int64(record.acceptedAt.timeIntervalSince1970)
        validator.now = { acceptedAt }
        let valid: ValidatedDeploy
        switch validator.validate(record.request) {
        case .failure(let refusal):
            await forget(record, journal: journal)
            return .failure(refusal)
        case .success(let v): valid = v
        }
        let reservation: NodeState.Reservation
        switch await runtime.manager.reserve(name: record.name, namespace: record.namespace) {
        case .failure(let refusal):
            await forget(record, journal: journal)
            return .failure(refusal)
        case .success(let r): reservation = r
        }
        let result: Result<RunResponse, DeployRefusal>
        do {
            let artifact = try await ArtifactFetcher(client: client, directory: home + "/artifacts").restore(
                record.request.location, hash: valid.hash, workloadID: record.id,
                maxBytes: config.nodeLimits.maxWorkloadBytes)
            result = await runtime.manager.start(
                valid, record: record, reservation: reservation, artifactPath: artifact.path, persist: true,
                alreadyRecorded: true)
        } catch {
            await runtime.manager.release(reservation)
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
