import Foundation
import NexModels
import NexOCI
import Tracing

extension NexNode {
    /// Deploys a container image: pulls it (or finds it in the cache) within the registry policy, checks it is
    /// the digest the deploy signed, and starts it in an agent of its own in the image's root.
    func deployImage(
        _ valid: ValidatedDeploy, workloadID: String, namespace: String, reservation: Reservation,
        runtime: NodeRuntime, persist: Bool
    ) async -> Result<RunResponse, NexError> {
        let request = valid.request
        let pull = tracing.start("nex.deploy.pull", parent: ServiceContext.current ?? .topLevel)
        let prepared = await prepareImage(valid, workloadID: workloadID, runtime: runtime, restoring: false)
        pull.end()
        let image: RunnableImage
        switch prepared {
        case .failure(let refusal):
            await runtime.manager.release(reservation)
            return .failure(refusal)
        case .success(let made): image = made
        }
        let record = WorkloadRecord(
            id: workloadID, namespace: namespace, request: request, hash: valid.hash, acceptedAt: Date(),
            totalBytes: Int(clamping: image.bytes), retryCount: request.retryCount ?? 0)
        let start = tracing.start("nex.deploy.start", parent: ServiceContext.current ?? .topLevel)
        let result = await runtime.manager.start(
            valid, record: record, reservation: reservation, artifactPath: "", image: image, persist: persist)
        if case .failure(let refusal) = result {
            start.setStatus(.init(code: .error, message: refusal.message))
            // Refused before a supervisor took the pin over (or after: a second release changes nothing).
            if case .success(let images) = runtime.manager.images {
                await images.release(image.manifestDigest, workloadID: workloadID)
            }
        }
        start.end()
        return result
    }

    /// Pulls the image a validated deploy names and works out how to run it; the image comes back pinned.
    func prepareImage(
        _ valid: ValidatedDeploy, workloadID: String, runtime: NodeRuntime, restoring: Bool
    ) async -> Result<RunnableImage, NexError> {
        let request = valid.request
        guard request.workloadType == .native else {
            return .failure(NexError(.invalidRequest, "an oci:// image runs as a native service: deploy it as native"))
        }
        guard !runtime.pool.isSandboxed || runtime.pool.runsImages else {
            return .failure(
                NexError(
                    .unsupported,
                    "the \(runtime.pool.driverName) sandbox does not run container images yet: deploy to a node with "
                        + "the namespace or vm sandbox"))
        }
        guard runtime.pool.isSandboxed else {
            return .failure(
                NexError(
                    .unsupported,
                    "a no_sandbox node cannot run a container image (it needs its own root file system): deploy to "
                        + "a node with the namespace or vm sandbox"))
        }
        let images: ImageService
        switch runtime.manager.images {
        case .failure(let problem): return .failure(problem)
        case .success(let service): images = service
        }
        let digest: OCIDigest
        do {
            digest = try OCIDigest(parsing: "sha256:" + valid.hash)
        } catch {
            return .failure(NexError(.invalidRequest, "\(error)"))
        }
        let pulled: PulledImage
        do {
            pulled = try await images.pull(
                request.location, digest: digest, workloadID: workloadID, restoring: restoring)
        } catch {
            return .failure(error)
        }
        for note in pulled.notes {
            logger.info("\(note)", metadata: ["nex.workload": "\(request.workloadName)", "nex.image": "\(digest)"])
        }
        do {
            return .success(try RunnableImage(pulled, argv: request.argv))
        } catch {
            await images.release(pulled.manifestDigest, workloadID: workloadID)
            return .failure(error)
        }
    }
}
