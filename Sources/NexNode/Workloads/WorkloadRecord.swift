import Foundation
import NexModels

/// A deploy the node accepted, as it was received: what the node keeps to run the workload again after
/// a restart. The request's environment stays sealed to the node's xkey and its host-services credentials
/// are sealed the same way (see ``WorkloadJournal``): nothing decrypted is kept.
struct WorkloadRecord: Codable, Sendable, Equatable {
    var id: String
    var namespace: String
    var request: DeployRequest
    /// The signed artifact hash (hex SHA-256).
    var hash: String
    /// When the node checked the deploy's token; a replay checks it as of then (a token that has expired
    /// since still covers the workload it started).
    var acceptedAt: Date
    var totalBytes: Int
    var retryCount: Int
    /// The workload this one restarts (an essential restart has a new id): a journal that holds both after
    /// a crash keeps only this one.
    var replaces: String?

    var name: String { request.workloadName }
    var type: String { request.type }
    var essential: Bool { request.essential ?? false }
    var key: String { namespace + "/" + name }

    enum CodingKeys: String, CodingKey {
        case id, namespace, request, replaces, hash
        case acceptedAt = "accepted_at"
        case totalBytes = "total_bytes"
        case retryCount = "retry_count"
    }
}

/// A write the workload journal must make.
enum JournalChange: Sendable, Equatable {
    case save(WorkloadRecord)
    case delete(id: String)
}

/// When essential workloads are restarted.
struct RestartPolicy: Sendable {
    var initialBackoff: Duration
    var maxBackoff: Duration
    /// 0: no limit.
    var maxRestarts: Int

    func allows(retry: Int) -> Bool { maxRestarts == 0 || retry < maxRestarts }

    /// Exponential backoff: `initial · 2^retry`, capped at `max`.
    func delay(retry: Int) -> Duration {
        Swift.min(initialBackoff * (1 << Swift.min(retry, 20)), maxBackoff)
    }
}
