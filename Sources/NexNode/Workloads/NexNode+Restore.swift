import Foundation
import NexModels
import NexOCI

/// Durable workloads: after a restart or a crash the node starts the workloads it had recorded, under
/// their ids, names, namespaces and issuers, so INFO, WPING, events and the issuer's stop work as before.
extension NexNode {
    /// A recorded workload that passed the checks and holds its place, waiting to be started.
    struct PendingRestore: Sendable {
        var record: WorkloadRecord
        var deploy: ValidatedDeploy
        var reservation: Reservation
    }

    /// The first step of a restart, before the node takes deploys: every record goes through the checks a
    /// deploy makes (as of the time it was accepted) and holds its place, so a deploy arriving meanwhile sees
    /// it (a duplicate, a slot under `max_workloads`). A record that no longer passes is dropped with the reason.
    func reserveRecordedWorkloads() async -> [PendingRestore] {
        guard config.persistWorkloads, let runtime, let journal = runtime.manager.journal else { return [] }
        var pending: [PendingRestore] = []
        let records = await journal.load()
        // Two records of one name (duplicates off) come from a restore that was still being retried when a
        // newer deploy took the name, and the node stopped before the retry gave way: the newer one wins.
        var newest: [String: WorkloadRecord] = [:]
        for record in records where newest[record.key].map({ $0.acceptedAt <= record.acceptedAt }) ?? true {
            newest[record.key] = record
        }
        for record in records {
            if !config.allowDuplicateWorkloads, newest[record.key]?.id != record.id {
                await forget(record, journal: journal)
                report(record, .failure(NexError(.duplicate, "a newer deploy of \(record.name) replaced it")))
                continue
            }
            var validator = makeValidator(config: config)
            let acceptedAt = Int64(record.acceptedAt.timeIntervalSince1970)
            validator.now = { acceptedAt }
            let refusal: NexError
            switch validator.validate(record.request, namespace: record.namespace) {
            case .failure(let r): refusal = r
            case .success(let valid):
                switch await runtime.manager.reserve(name: record.name, namespace: record.namespace) {
                case .failure(let r): refusal = r
                case .success(let reservation):
                    pending.append(PendingRestore(record: record, deploy: valid, reservation: reservation))
                    // Held from now: a pull for another restore or a deploy must not evict what this one needs.
                    if record.request.location.isImage, case .success(let images) = runtime.manager.images,
                        let digest = try? OCIDigest(parsing: "sha256:" + valid.hash)  // try?: checked at deploy
                    {
                        _ = await images.store.cached(digest, platform: .current, holder: record.id)
                    }
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
                    "record": "\(refusal.isTransient ? "kept, tried again" : "removed")",
                ])
        }
    }

    private func restore(
        _ item: PendingRestore, attempt: Int = 0, runtime: NodeRuntime, journal: WorkloadJournal
    ) async -> Result<RunResponse, NexError> {
        let record = item.record
        let result: Result<RunResponse, NexError>
        if record.request.location.isImage {
            // From the image cache, by the digest accepted (a cache that lost it pulls it again by digest).
            switch await prepareImage(item.deploy, workloadID: record.id, runtime: runtime, restoring: true) {
            case .success(let image):
                result = await runtime.manager.start(
                    item.deploy, record: record, reservation: item.reservation, artifactPath: "", image: image,
                    persist: true, alreadyRecorded: true)
                if case .failure = result, case .success(let images) = runtime.manager.images {
                    await images.release(image.manifestDigest, workloadID: record.id)
                }
            case .failure(let refusal):
                await runtime.manager.release(item.reservation)
                // The pin taken when it was reserved; a retry pins again.
                if case .success(let images) = runtime.manager.images {
                    await images.store.unpinAll(holder: record.id)
                }
                result = .failure(refusal)
            }
            await settle(
                record, deploy: item.deploy, after: result, attempt: attempt, runtime: runtime, journal: journal)
            return result
        }
        do {
            let artifact = try await ArtifactFetcher(
                client: client, directory: home + "/artifacts", logger: logger,
                cacheLimitBytes: Int64(config.ociCacheLimitMB) << 20
            )
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
        await settle(record, deploy: item.deploy, after: result, attempt: attempt, runtime: runtime, journal: journal)
        return result
    }

    /// What follows a restore's attempt. What is refused for good (today's limits or sandbox, an artifact gone
    /// or changed) or during a drain loses its record. What may pass (the object store unreachable, no agent
    /// in time) is tried again with the restart backoff while the node runs, so the record never outlives the
    /// node's intent: it stays only while the node still means to run the workload. A shutdown meanwhile
    /// keeps it for the next start.
    private func settle(
        _ record: WorkloadRecord, deploy: ValidatedDeploy, after result: Result<RunResponse, NexError>,
        attempt: Int = 0, runtime: NodeRuntime, journal: WorkloadJournal
    ) async {
        guard case .failure(let refusal) = result else { return }
        let manager = runtime.manager
        guard refusal.isTransient, !(await manager.isDraining) else {
            await forget(record, journal: journal)
            return
        }
        let delay = config.restartPolicy.delay(retry: attempt)
        let retry = manager.tasks.spawn {
            do { try await Task.sleep(for: delay) } catch { return }  // the node stops: the record stays
            await self.retryRestore(record, deploy: deploy, attempt: attempt + 1, runtime: runtime, journal: journal)
        }
        if retry == nil { return }  // the node is stopping: the record stays for its next start
        logger.warning(
            "recorded workload will be tried again",
            metadata: ["nex.workload_id": "\(record.id)", "delay": "\(delay)", "reason": "\(refusal)"])
    }

    private func retryRestore(
        _ record: WorkloadRecord, deploy: ValidatedDeploy, attempt: Int, runtime: NodeRuntime,
        journal: WorkloadJournal
    ) async {
        if await runtime.manager.isClosed { return }
        switch await runtime.manager.reserve(name: record.name, namespace: record.namespace) {
        case .failure(let refusal):
            if await runtime.manager.isClosed { return }
            // A deploy took the name (or the last place) meanwhile: the newer one wins.
            await forget(record, journal: journal)
            report(record, .failure(refusal))
        case .success(let reservation):
            let result = await restore(
                PendingRestore(record: record, deploy: deploy, reservation: reservation), attempt: attempt,
                runtime: runtime, journal: journal)
            report(record, result)
        }
    }

    private func forget(_ record: WorkloadRecord, journal: WorkloadJournal) async {
        do { try await journal.commit([.delete(id: record.id)]) } catch {
            logger.error(
                "cannot remove a workload record", metadata: ["nex.workload_id": "\(record.id)", "error": "\(error)"])
        }
    }
}
