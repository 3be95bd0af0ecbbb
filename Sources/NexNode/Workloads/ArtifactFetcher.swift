import Crypto
import Foundation
import Logging
import NATS
import NATSJetStream
import NexControlClient
import NexModels
import NexProcess
import Synchronization

/// Downloads a workload's artifact from its object store and checks it against the issuer-signed hash —
/// the comparison Nex 0.x computed but never made.
struct ArtifactFetcher: Sendable {
    let client: NATSClient
    /// Where artifacts are written (one file per workload).
    let directory: String
    let logger: Logger
    /// What the verified cache may hold (the node's `oci_cache_limit_mb`); nil: no limit.
    var cacheLimitBytes: Int64?

    /// The downloaded artifact.
    struct Artifact: Sendable {
        var path: String
        var size: Int
    }

    /// Fetches `location`, refusing when it is missing, larger than `maxBytes`, or not `expectedHash`.
    ///
    /// The object streams from the store to a file beside its final place, hashed chunk by chunk as it
    /// arrives; file work runs on the blocking-I/O pool. Only bytes that match the signed hash are moved into
    /// place (and into the verified cache): a refused artifact leaves nothing behind.
    func fetch(_ location: WorkloadLocation, expectedHash: String, workloadID: String, maxBytes: Int64?)
        async throws(NexError) -> Artifact
    {
        let expected = expectedHash.lowercased()
        let path = directory + "/" + workloadID
        let verified = directory + "/verified"
        let cached = verified + "/" + expected
        let chunks: ObjectChunks
        let store: ObjectStore
        do {
            store = try await JetStreamContext(client: client).objectStore(location.bucket)
            chunks = try await store.stream(location.key)
        } catch let e as JetStreamError where e.code == 404 {
            throw NexError(
                .notFound, "artifact \(location) not found: upload it first (devrun does; or nats object put)")
        } catch {
            throw NexError(.unavailable, "cannot download the artifact \(location): \(error)", isTransient: true)
        }
        let info = chunks.info
        if let maxBytes, Int64(info.size) > maxBytes {
            throw NexError(
                .limitExceeded,
                "artifact of \(info.size) bytes exceeds node_limits.max_workload_bytes \(maxBytes): use a smaller "
                    + "artifact or another node")
        }
        // Bytes this node already downloaded and verified against the same signed hash need no second
        // download (redeploys and restarts of one artifact).
        if NexControlClient.hexSHA256(fromDigest: info.digest) == expected,
            let size = await reuseVerifiedCopy(hash: expected, as: path, hashAgain: false)
        {
            return Artifact(path: path, size: size)
        }
        let partial = path + ".partial"
        let writer: BlockingFileWriter
        do {
            try await BlockingIO.run {
                try FileManager.default.createDirectory(atPath: verified, withIntermediateDirectories: true)
            }
            writer = try await BlockingFileWriter.create(partial, mode: 0o700)
        } catch {
            throw NexError(.storage, "cannot write the artifact: \(error)", isTransient: true)
        }
        let actual: String
        let size: Int
        do {
            (actual, size) = try await Self.download(
                chunks, to: writer, maxBytes: maxBytes, watching: store, key: location.key)
        } catch {
            await writer.discard()
            if let refusal = error as? NexError { throw refusal }
            if error is SystemCallError {
                throw NexError(.storage, "cannot write the artifact: \(error)", isTransient: true)
            }
            throw NexError(.unavailable, "cannot download the artifact \(location): \(error)", isTransient: true)
        }
        guard actual == expected else {
            _ = await BlockingIO.run { unlink(partial) }
            throw NexError(
                .integrity,
                "artifact hash \(actual) does not match the signed hash \(expectedHash): the object changed after the "
                    + "deploy was signed; sign a deploy for the artifact as it is now")
        }
        let cacheProblem: String?
        let limit = cacheLimitBytes
        do {
            cacheProblem = try await BlockingIO.run { () throws -> String? in
                guard rename(partial, path) == 0 else {
                    throw SystemCallError.current("cannot move \(partial) into place")
                }
                // The cache only saves a later download: when it cannot keep this copy, nothing else changes.
                // (A copy already there is checked when it is next used.)
                guard link(path, cached) == 0 else {
                    return errno == EEXIST ? nil : "cannot link it: \(String(cString: strerror(errno)))"
                }
                do { try VerifiedCopyStamp.record(for: cached) } catch { return "cannot stamp it: \(error)" }
                // This copy is held (the workload's artifact links it): only older, unheld ones can go.
                if let limit { VerifiedCacheEviction.evict(directory: verified, limitBytes: limit) }
                return nil
            }
        } catch {
            _ = await BlockingIO.run { unlink(partial) }
            throw NexError(.storage, "cannot write the artifact: \(error)", isTransient: true)
        }
        if let cacheProblem {
            logger.warning(
                "a verified artifact cannot be cached; a redeploy downloads it again",
                metadata: ["nex.artifact_hash": "\(expected)", "error": "\(cacheProblem)"])
        }
        return Artifact(path: path, size: size)
    }

    /// Writes the chunks to `writer` (synced when done) and returns their hex SHA-256 and size. Beside it, a
    /// watch: when no chunk came for ``stallCheck`` and the object in the store is no longer the one being
    /// read (replaced or deleted, its chunks purged), the download ends instead of waiting forever.
    static func download(
        _ chunks: ObjectChunks, to writer: BlockingFileWriter, maxBytes: Int64?, watching store: ObjectStore,
        key: String
    ) async throws -> (String, Int) {
        let received = ReceivedBytes()
        return try await withThrowingTaskGroup(of: (String, Int)?.self) { group in
            group.addTask {
                var hasher = SHA256()
                var size = 0
                var pending: [UInt8] = []
                pending.reserveCapacity(Self.writeSize)
                for try await chunk in chunks {
                    hasher.update(data: chunk)
                    size += chunk.count
                    received.count.store(size, ordering: .relaxed)
                    if let maxBytes, Int64(size) > maxBytes {
                        throw NexError(
                            .limitExceeded,
                            "artifact grew past node_limits.max_workload_bytes \(maxBytes) while downloading")
                    }
                    pending += chunk
                    if pending.count >= Self.writeSize {
                        try await writer.write(pending)
                        pending.removeAll(keepingCapacity: true)
                    }
                }
                if !pending.isEmpty { try await writer.write(pending) }
                try await writer.finish()
                return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
            }
            group.addTask {
                while true {
                    let before = received.count.load(ordering: .relaxed)
                    try await Task.sleep(for: Self.stallCheck)
                    guard received.count.load(ordering: .relaxed) == before else { continue }
                    let current: ObjectInfo?
                    do { current = try await store.info(key) } catch {
                        continue  // the store did not answer: nothing learned, look again later
                    }
                    if current?.nuid != chunks.info.nuid {
                        throw NexError(
                            .unavailable,
                            "the artifact was replaced or deleted in the object store while it was downloaded: "
                                + "deploy again", isTransient: true)
                    }
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }

    /// How long a download may see no chunk before the object in the store is checked.
    static let stallCheck = Duration.seconds(5)

    /// Bytes gathered before one write: fewer thread hops than one per 128 KiB chunk.
    static let writeSize = 1 << 20

    /// A recorded workload's artifact after a restart: the node's verified copy, hashed again (a copy that
    /// changed on disk is thrown away), else downloaded again from `location`.
    func restore(_ location: WorkloadLocation, hash: String, workloadID: String, maxBytes: Int64?)
        async throws(NexError) -> Artifact
    {
        let path = directory + "/" + workloadID
        if let size = await reuseVerifiedCopy(hash: hash.lowercased(), as: path, hashAgain: true) {
            if let maxBytes, Int64(size) > maxBytes {
                _ = await BlockingIO.run { unlink(path) }  // our own link to the cached copy, made above
                throw NexError(
                    .limitExceeded, "artifact of \(size) bytes exceeds node_limits.max_workload_bytes \(maxBytes)")
            }
            return Artifact(path: path, size: size)
        }
        return try await fetch(location, expectedHash: hash, workloadID: workloadID, maxBytes: maxBytes)
    }

    /// Links the verified copy of `hash` to `path`; its size, or nil when there is no usable copy. The copy is
    /// hashed again when `hashAgain` is set (after a restart) or when it changed since it was verified (its
    /// ``VerifiedCopyStamp``); a copy that no longer matches is removed. Why a copy cannot be used is logged,
    /// and the caller downloads instead.
    private func reuseVerifiedCopy(hash: String, as path: String, hashAgain: Bool) async -> Int? {
        let cached = directory + "/verified/" + hash
        let directory = self.directory
        let outcome = await BlockingIO.run { () -> Result<Int?, any Error> in
            Result {
                guard let now = VerifiedCopyStamp(ofFileAt: cached) else { return nil }
                var size = now.size
                if hashAgain || VerifiedCopyStamp(recordedFor: cached) != now {
                    guard let (digest, hashedSize) = try Self.sha256(ofFileAt: cached) else { return nil }
                    guard digest == hash else {
                        VerifiedCopyStamp.remove(for: cached)
                        do { try FileManager.default.removeItem(atPath: cached) } catch {
                            throw UnusableCopy("it no longer matches its hash, and cannot be removed: \(error)")
                        }
                        throw UnusableCopy("it no longer matches its hash (removed)")
                    }
                    size = hashedSize
                    try VerifiedCopyStamp.record(for: cached)
                }
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                guard link(cached, path) == 0 else {
                    throw UnusableCopy("cannot link it: \(String(cString: strerror(errno)))")
                }
                VerifiedCacheEviction.touch(cached)
                return size
            }
        }
        switch outcome {
        case .success(let size): return size
        case .failure(let error):
            logger.warning(
                "the verified copy of an artifact cannot be reused; downloading it again",
                metadata: ["nex.artifact_hash": "\(hash)", "error": "\(error)"])
            return nil
        }
    }

    /// The hex SHA-256 and size of a file, read in 1 MiB chunks; nil when there is no such file.
    static func sha256(ofFileAt path: String) throws -> (String, Int)? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }  // read only: a failed close loses nothing
        var hasher = SHA256()
        var size = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += chunk.count
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
    }
}

/// Bytes a download has received so far, read by its stall watch.
private final class ReceivedBytes: Sendable {
    let count = Atomic<Int>(0)
}

/// Why a verified copy cannot stand in for a download.
private struct UnusableCopy: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
