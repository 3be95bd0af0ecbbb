import Dispatch
import Foundation
import Logging
import NKeys
import NexModels

/// The node's accepted deploys on disk: one file per workload, `<node home>/workloads/<id>.json`, mode
/// 0600, each written whole or not at all (``AtomicFile``). Writes run on one serial queue in the order they
/// were asked for, off the caller's executor.
///
/// Nothing decrypted is stored: the environment stays as the issuer sealed it to the node's xkey, and the
/// deploy's host-services settings (which may carry a user seed) are sealed to the same key before writing.
final class WorkloadJournal: Sendable {
    let directory: String
    private let xkey: NKeyPair
    private let queue = DispatchQueue(label: "nex.node.journal")
    private let logger: Logger

    init(directory: String, xkey: NKeyPair, logger: Logger) {
        self.directory = directory
        self.xkey = xkey
        self.logger = logger
    }

    /// Makes `changes`, in order, after every change asked for before. Stops at the first failure and
    /// throws it: a restart's delete of the old record never follows a save of the new one that failed.
    nonisolated(nonsending) func commit(_ changes: [JournalChange]) async throws {
        guard !changes.isEmpty else { return }
        let writes = try changes.map { change -> (String, [UInt8]?) in
            switch change {
            case .save(let record): (path(record.id), try encode(record))
            case .delete(let id): (path(id), nil)
            }
        }
        let directory = self.directory
        // The closure runs at once, so the writes are queued in the caller's order.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                var failure: (any Error)?
                for (path, bytes) in writes where failure == nil {
                    do {
                        if let bytes {
                            try FileManager.default.createDirectory(
                                atPath: directory, withIntermediateDirectories: true,
                                attributes: [.posixPermissions: 0o700])
                            try AtomicFile.write(bytes, to: path)
                        } else if unlink(path) == 0 {
                            AtomicFile.syncDirectory(of: path)
                        } else if errno != ENOENT {
                            throw AtomicFileError(path: path, errno: errno)
                        }
                    } catch {
                        failure = error
                    }
                }
                if let failure { continuation.resume(throwing: failure) } else { continuation.resume() }
            }
        }
    }

    /// The records kept, oldest first. A record that another one replaces (an essential restart cut short
    /// by a crash) is dropped; a file that cannot be read is moved aside to `<id>.json.unreadable` and
    /// reported.
    func load() async -> [WorkloadRecord] {
        let directory = self.directory
        let logger = self.logger
        let files = await withCheckedContinuation { (continuation: CheckedContinuation<[(String, Data?)], Never>) in
            queue.async {
                var names: [String] = []
                do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
                    // No directory yet: nothing was ever kept. Any other failure hides every record.
                    if FileManager.default.fileExists(atPath: directory) {
                        logger.error(
                            "the workload records cannot be listed; none are restored",
                            metadata: ["path": "\(directory)", "error": "\(error)"])
                    }
                }
                continuation.resume(
                    returning: names.filter { $0.hasSuffix(".json") }.sorted().map { name in
                        (directory + "/" + name, FileManager.default.contents(atPath: directory + "/" + name))
                    })
            }
        }
        var records: [WorkloadRecord] = []
        for (path, data) in files {
            do {
                guard let data else { throw AtomicFileError(path: path, errno: EIO) }
                records.append(try decode(data))
            } catch {
                logger.error(
                    "a workload record cannot be read; moved aside",
                    metadata: ["path": "\(path)", "error": "\(error)"])
                _ = rename(path, path + ".unreadable")
            }
        }
        let replaced = Set(records.compactMap(\.replaces))
        for record in records where replaced.contains(record.id) {
            do { try await commit([.delete(id: record.id)]) } catch {
                // Harmless now (it is skipped), but it would be read and skipped again at every start.
                logger.warning(
                    "a replaced workload record cannot be deleted",
                    metadata: ["nex.workload": "\(record.id)", "error": "\(error)"])
            }
        }
        return records.filter { !replaced.contains($0.id) }.sorted { ($0.acceptedAt, $0.id) < ($1.acceptedAt, $1.id) }
    }

    private func path(_ id: String) -> String { directory + "/" + id + ".json" }

    /// The stored form: the record with its host-services settings sealed.
    struct Stored: Codable {
        var version = 1
        var record: WorkloadRecord
        /// xkv1, sealed by the node's xkey to itself, of the request's `host_services_config`.
        var sealedHostServices: String?

        enum CodingKeys: String, CodingKey {
            case version, record
            case sealedHostServices = "sealed_host_services_config"
        }
    }

    func encode(_ record: WorkloadRecord) throws -> [UInt8] {
        var stored = Stored(record: record)
        if let settings = record.request.hostServicesConfig {
            let plain = try JSONEncoder().encode(settings)
            stored.sealedHostServices = Data(try xkey.seal(Array(plain), to: xkey.publicKey)).base64EncodedString()
            stored.record.request.hostServicesConfig = nil
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return Array(try encoder.encode(stored))
    }

    func decode(_ data: Data) throws -> WorkloadRecord {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let stored = try decoder.decode(Stored.self, from: data)
        var record = stored.record
        if let sealed = stored.sealedHostServices {
            guard let bytes = Data(base64Encoded: sealed) else { throw JournalError("host services not base64") }
            let plain = try xkey.open(Array(bytes), from: xkey.publicKey)
            record.request.hostServicesConfig = try JSONDecoder().decode(HostServicesConfig.self, from: Data(plain))
        }
        return record
    }
}

struct JournalError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
