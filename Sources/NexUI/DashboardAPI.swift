import Foundation
import NATS
import NKeys
import NexControlClient
import NexModels

/// What the dashboard's API answers, from the Nex control API.
struct DashboardAPI: Sendable {
    let client: NATSClient
    let serverURL: String
    let namespace: String
    let issuer: NKeyPair?

    var nex: NexControlClient {
        var nex = NexControlClient(client: client, namespace: namespace)
        // The page polls: gather for a short while, not the CLI's 2 s.
        nex.gatherStall = .milliseconds(250)
        nex.gatherTimeout = .seconds(1)
        return nex
    }

    // MARK: Overview

    struct Overview: Encodable {
        var server: String
        var namespace: String
        var nodes: [Node]
        var workloads: [Workload]
    }

    struct Node: Encodable {
        var id: String
        var version: String
        var uptime: String
        var tags: [String: String]
        var memoryFreeKB: Int?
        var memoryTotalKB: Int?
        var availableAgents: Int?
        var running: Int
        /// Why its INFO is missing, when it is.
        var error: String?

        enum CodingKeys: String, CodingKey {
            case id, version, uptime, tags, running
            case memoryFreeKB = "memory_free_kb"
            case memoryTotalKB = "memory_total_kb"
            case availableAgents = "available_agents"
            case error
        }
    }

    struct Workload: Encodable {
        var id: String
        var namespace: String
        var name: String
        var type: String
        var node: String
        var uptime: String
        var health: String
    }

    /// Every node that answers PING, with its INFO (memory, warm agents, this namespace's workloads).
    func overview() async throws -> Overview {
        let nex = self.nex
        let pings = try await nex.ping().sorted { $0.nodeID < $1.nodeID }
        let infos = await withTaskGroup(of: (String, Result<InfoResponse, any Error>).self) { group in
            for ping in pings {
                // A node that answered PING but not INFO (going away) is still listed, with the reason.
                group.addTask {
                    do { return (ping.nodeID, .success(try await nex.info(node: ping.nodeID))) } catch {
                        return (ping.nodeID, .failure(error))
                    }
                }
            }
            var infos: [String: Result<InfoResponse, any Error>] = [:]
            for await (id, info) in group { infos[id] = info }
            return infos
        }
        var nodes: [Node] = []
        var workloads: [Workload] = []
        for ping in pings {
            var info: InfoResponse?
            var problem: String?
            switch infos[ping.nodeID] {
            case .success(let answer): info = answer
            case .failure(let error): problem = "no INFO: \(error)"
            case nil: problem = "no INFO"
            }
            nodes.append(
                Node(
                    id: ping.nodeID, version: ping.version, uptime: ping.uptime, tags: ping.tags,
                    memoryFreeKB: info?.memory?.free, memoryTotalKB: info?.memory?.total,
                    availableAgents: info?.availableAgents, running: ping.runningMachines, error: problem))
            for machine in info?.machines ?? [] {
                workloads.append(
                    Workload(
                        id: machine.workload.id, namespace: machine.namespace, name: machine.workload.name,
                        type: machine.workload.type, node: ping.nodeID, uptime: machine.uptime,
                        health: machine.healthy ? "running" : "unhealthy"))
            }
        }
        workloads.sort { ($0.name, $0.node) < ($1.name, $1.node) }
        return Overview(server: serverURL, namespace: namespace, nodes: nodes, workloads: workloads)
    }

    // MARK: Live feeds

    /// A subject to follow, and how each message reads as one JSON line of a server-sent event (nil: skip).
    struct Feed: Sendable {
        var subject: String
        var render: @Sendable (NATSMessage) -> String?
    }

    /// The namespace's events: `{"type", "namespace", "time", "data"}` from each CloudEvent.
    func events() -> Feed {
        Feed(subject: NexSubjects.events(namespace: namespace)) { message in
            let parts = message.subject.split(separator: ".")
            // Not a CloudEvent: not an event to show.
            guard parts.count == 4,
                let cloud = try? JSONDecoder().decode(CloudEventBody.self, from: Data(message.bytes))
            else { return nil }
            let event = EventLine(
                type: String(parts[3]), namespace: String(parts[2]), time: cloud.time ?? .null,
                data: cloud.data ?? .null)
            return Self.line(event)
        }
    }

    /// What the page shows of a CloudEvent.
    private struct CloudEventBody: Decodable {
        var time: JSONValue?
        var data: JSONValue?
    }

    /// One line of the events feed (`time` and `data` null when the event had none).
    private struct EventLine: Encodable {
        var type: String
        var namespace: String
        var time: JSONValue
        var data: JSONValue
    }

    /// One workload's log lines: each ``LogEntry`` as the node published it.
    func logs(workload: String) -> Feed {
        Feed(subject: NexSubjects.logsFilter(namespace: namespace, node: nil, workloadName: workload, workloadID: nil))
        {
            message in
            // Not a log entry: not one of ours, skipped.
            guard (try? JSONDecoder().decode(LogEntry.self, from: Data(message.bytes))) != nil else { return nil }
            // Already one JSON object; a newline inside would end the event early.
            return String(decoding: message.bytes, as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
        }
    }

    /// One JSON line; nil (the message is skipped) when it cannot be encoded.
    static func line(_ value: some Encodable) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return nil }  // skipped, as documented
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Stop

    /// Stops a workload of this namespace with the CLI's issuer key (the node checks it deployed it).
    func stop(_ request: StopRequest) async -> StopAnswer {
        guard let issuer else {
            return StopAnswer(
                ok: false, error: "this dashboard has no issuer key: start it with --issuer (default ~/.nex/issuer.nk)")
        }
        do {
            let answer = try await nex.stop(workloadID: request.workloadID, node: request.node, issuer: issuer)
            return answer.stopped ? StopAnswer(ok: true) : StopAnswer(ok: false, error: "the node did not stop it")
        } catch {
            return StopAnswer(ok: false, error: "\(error)")
        }
    }
}

/// `POST /api/stop`'s body.
struct StopRequest: Decodable {
    var node: String
    var workloadID: String

    enum CodingKeys: String, CodingKey {
        case node
        case workloadID = "workload_id"
    }
}

/// What `POST /api/stop` answers.
struct StopAnswer: Encodable {
    var ok: Bool
    var error: String?
}
