import Foundation
import NexControlClient
import NexModels

/// Ids as people type them: a unique prefix of a node or workload id, or a workload's name.
enum IDResolution {
    /// A node id in full (`N` and 55 more characters): used as given, with no lookup.
    static func isFullNodeID(_ text: String) -> Bool {
        text.count == 56 && text.hasPrefix("N") && text.allSatisfy { $0.isASCII && ($0.isUppercase || $0.isNumber) }
    }

    /// The node whose id is `text` or starts with it.
    static func node(_ text: String, _ nex: NexControlClient) async throws -> String {
        if isFullNodeID(text) { return text }
        let ids = try await nex.ping().map(\.nodeID).filter { $0.hasPrefix(text.uppercased()) }.sorted()
        return try unique(ids, for: text, what: "node id", listing: "nex node ls")
    }

    /// The copy of a workload `text` names: its id, a unique prefix of it, or its name (on `node` only, when
    /// given). A name that several copies share is ambiguous: the candidates are listed.
    static func workload(_ text: String, node: String?, _ nex: NexControlClient) async throws -> WorkloadCopy {
        let all = try await nex.workloadPing().flatMap { n in
            n.runningMachines.map { (copy: WorkloadCopy(id: $0.id, node: n.nodeID), name: $0.name) }
        }.filter { node == nil || $0.copy.node == node }
        if let exact = all.first(where: { $0.copy.id == text }) { return exact.copy }
        let byName = all.filter { $0.name == text }
        let matches = byName.isEmpty ? all.filter { $0.copy.id.hasPrefix(text.lowercased()) } : byName
        let id = try unique(
            matches.map { "\($0.copy.id) (\($0.name) on \($0.copy.node.prefix(12))…)" }.sorted(), for: text,
            what: "workload id or name", listing: "nex ls")
        return matches.first { id.hasPrefix($0.copy.id) }!.copy
    }

    /// The one candidate, or an error that names none or all of them.
    private static func unique(_ candidates: [String], for text: String, what: String, listing: String) throws
        -> String
    {
        switch candidates.count {
        case 1: return candidates[0]
        case 0: throw CLIError("no \(what) matches \(text): `\(listing)` lists them")
        default:
            throw CLIError(
                "\(text) matches \(candidates.count) of them; give more of the id:\n"
                    + candidates.map { "  " + $0 }.joined(separator: "\n"))
        }
    }
}
