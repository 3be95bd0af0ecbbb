import Crypto
import Foundation
import NATS
import NATSJetStream
import NIOPosix
import NexControlClient
import NexModels

/// Downloads a workload's artifact from its object store and checks it against the issuer-signed hash —
/// the comparison Nex 0.x computed but never made.
struct ArtifactFetcher: Sendable {
    let client: NATSClient
    /// Where artifacts are written (one file per workload).
    let directory: String

    /// The downloaded artifact.
    struct Artifact: Sendable {
        var path: String
        var size: Int
    }

    /// Fetches `location`, refusing when it is missing, larger than `maxBytes`, or not `expectedHash`.
    func fetch(_ location: WorkloadLocation, expectedHash: String, workloadID: String, maxBytes: Int64?)
        async throws(DeployRefusal) -> Artifact
    {
        let js = JetStreamContext(client: client)
        let bytes: [UInt8]
        let path = directory + "/" + workloadID
        let cached = directory + "/verified/" + expectedHash.lowercased()
        do {
            let store = try await js.objectStore(location.bucket)
            guard let info = try await store.info(location.key) else {
                throw DeployRefusal("artifact \(location) not found: upload it first (devrun does; or nats object put)")
            }
            if let maxBytes, Int64(info.size) > maxBytes {
                throw DeployRefusal(
                    "artifact of \(info.size) bytes exceeds node_limits.max_workload_bytes \(maxBytes): use a smaller "
                        + "artifact or another node")
            }
            // Bytes this node already downloaded and verified against the same signed hash need no second
            // download (redeploys and restarts of one artifact).
            if NexControlClient.hexSHA256(fromDigest: info.digest) == expectedHash.lowercased(), link(cached, path) == 0
            {
                return Artifact(path: path, size: Int(info.size))
            }
            bytes = try await store.get(location.key)
        } catch let refusal as DeployRefusal {
            throw refusal
        } catch let e as JetStreamError where e.code == 404 {
            throw DeployRefusal("artifact \(location) not found: upload it first (devrun does; or nats object put)")
        } catch {
            throw DeployRefusal("cannot download the artifact \(location): \(error)", isTransient: true)
        }
        let actual = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
        guard actual == expectedHash.lowercased() else {
            throw DeployRefusal(
                "artifact hash \(actual) does not match the signed hash \(expectedHash): the object changed after the "
                    + "deploy was signed; sign a deploy for the artifact as it is now")
        }
        let directory = self.directory
        // Control handlers run on the client's event loop: disk writes go to NIO's blocking-I/O pool.
        let written = try? await NIOThreadPool.singleton.runIfActive {
            try FileManager.default.createDirectory(
                atPath: directory + "/verified", withIntermediateDirectories: true)
            let ok = FileManager.default.createFile(
                atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o700])
            if ok { _ = link(path, cached) }
            return ok
        }
        guard written == true else { throw DeployRefusal("cannot write the artifact to \(path)", isTransient: true) }
        return Artifact(path: path, size: bytes.count)
    }

    /// A recorded workload's artifact after a restart: the node's verified copy, hashed again (a copy that
    /// changed on disk is thrown away), else downloaded again from `location`.
    func restore(_ location: WorkloadLocation, hash: String, workloadID: String, maxBytes: Int64?)
        async throws(DeployRefusal) -> Artifact
    {
        let cached = directory + "/verified/" + hash.lowercased()
        let path = directory + "/" + workloadID
        let size = try? await NIOThreadPool.singleton.runIfActive { () throws -> Int? in
            guard let (digest, size) = try Self.sha256(ofFileAt: cached) else { return nil }
            guard digest == hash.lowercased() else {
                try? FileManager.default.removeItem(atPath: cached)
                return nil
            }
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return link(cached, path) == 0 ? size : nil
        }
        if let size = size ?? nil {
            if let maxBytes, Int64(size) > maxBytes {
                try? FileManager.default.removeItem(atPath: path)
                throw DeployRefusal("artifact of \(size) bytes exceeds node_limits.max_workload_bytes \(maxBytes)")
            }
            return Artifact(path: path, size: size)
        }
        return try await fetch(location, expectedHash: hash, workloadID: workloadID, maxBytes: maxBytes)
    }

    /// The hex SHA-256 and size of a file, read in 1 MiB chunks; nil when there is no such file.
    static func sha256(ofFileAt path: String) throws -> (String, Int)? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        var hasher = SHA256()
        var size = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += chunk.count
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
    }
}
