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
                    "recorded workload dropped: it cannot start again",
                    metadata: [
                        "nex.workload": "\(record.name)", "nex.workload_id": "\(record.id)", "reason": "\(refusal)",
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
            try? await journal.commit([.delete(id: record.id)])
            return .failure(refusal)
        case .success(let v): valid = v
        }
        if let refusal = await runtime.manager.reserve(name: record.name, namespace: record.namespace) {
            try? await journal.commit([.delete(id: record.id)])
            return .failure(refusal)
        }
        let result: Result<RunResponse, DeployRefusal>
        do {
            let artifact = try await ArtifactFetcher(client: client, directory: home + "/artifacts").restore(
                record.request.location, hash: valid.hash, workloadID: record.id,
                maxBytes: config.nodeLimits.maxWorkloadBytes)
            // Already recorded; a start that fails removes the record.
            result = await runtime.manager.start(
                valid, record: record, artifactPath: artifact.path, persist: true, alreadyRecorded: true)
        } catch {
            // Kept: the verified copy is gone and the object store did not answer; the next start tries again.
            result = .failure(DeployRefusal("\(error.message) (the record is kept for the next start)"))
        }
        await runtime.manager.release(name: record.name, namespace: record.namespace)
        return result
    }
}
