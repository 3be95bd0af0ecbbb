import Foundation
import NATS
import NATSJetStream
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

    /// The workload `nex logs TEXT` shows: a full id; a name of a workload that runs or has kept lines; or a
    /// unique prefix of such a workload's id (one that has exited included). Anything else is taken as a name
    /// (its workload may be about to start), with a notice.
    static func logsTarget(_ text: String, node: String?, _ nex: NexControlClient) async throws
        -> (name: String?, id: String?)
    {
        if UUID(uuidString: text) != nil { return (nil, text.lowercased()) }
        var known: [(name: String, id: String)] = try await nex.workloadPing().flatMap { n in
            n.runningMachines.filter { _ in node == nil || n.nodeID == node }.map { ($0.name, $0.id) }
        }
        known += try await keptWorkloads(node: node, nex)
        if known.contains(where: { $0.name == text }) { return (text, nil) }
        let ids = Set(known.filter { $0.id.hasPrefix(text.lowercased()) }.map(\.id))
        let names = Dictionary(known.map { ($0.id, $0.name) }) { first, _ in first }
        if ids.isEmpty {
            Output.notice(
                "no workload named \(text), or with an id starting so, has run here: showing the name \(text)")
            return (text, nil)
        }
        let id = try unique(
            ids.map { "\($0) (\(names[$0] ?? "?"))" }.sorted(), for: text, what: "workload id or name",
            listing: "nex ls")
        return (nil, String(id.prefix(while: { $0 != " " })))
    }

    /// The (name, id) of every workload with lines kept in ``LogHistory/stream`` (none without the stream).
    private static func keptWorkloads(node: String?, _ nex: NexControlClient) async throws -> [(
        name: String, id: String
    )] {
        let filter = NexSubjects.logsFilter(namespace: nex.namespace, node: node, workloadName: nil, workloadID: nil)
        let subjects: [String: UInt64]
        do {
            subjects = try await JetStreamContext(client: nex.client).subjectCounts(
                stream: LogHistory.stream, filter: filter)
        } catch let e as JetStreamError where e.code == 404 || e.code == 503 {
            return []  // no stream, or no JetStream: nothing kept to look in (`nex logs` says so)
        } catch let e as NATSError where e.code == .noResponders || e.code == .timeout {
            return []  // no JetStream in this account
        }
        // $NEX.logs.<ns>.<node>.<workload_name>.<workload_id>
        return subjects.keys.compactMap { subject in
            let parts = subject.split(separator: ".")
            return parts.count == 6 ? (String(parts[4]), String(parts[5])) : nil
        }
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
