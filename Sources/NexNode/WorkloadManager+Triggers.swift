import Foundation
import NATS
import NexModels

/// Functions: each trigger subject is a queue subscription on the node's NATS connection (so instances on
/// every node share the load); a message is handed to the function's agent with its real subject, and the
/// answer goes back to the requester.
extension WorkloadManager {
    /// The queue group of a function's instances.
    static func queueGroup(namespace: String, name: String) -> String { "nex-\(namespace)-\(name)" }

    func subscribeTriggers(of workload: Workload) async throws -> [NATSSubscription] {
        let subjects = workload.deploy.request.triggerSubjects ?? []
        guard workload.type != "native", !subjects.isEmpty else { return [] }
        let client = events.client
        let queue = Self.queueGroup(namespace: workload.namespace, name: workload.name)
        var subs: [NATSSubscription] = []
        for subject in subjects {
            // Runs on the client's event loop, off the manager actor: a trigger is two hops, not four.
            subs.append(
                try await client.subscribe(to: subject, queue: queue) { m in
                    await self.runTrigger(m, workload: workload)
                })
        }
        try await client.flush()
        return subs
    }

    nonisolated(nonsending) func runTrigger(_ m: NATSMessage, workload: Workload) async {
        let agentID = workload.agent.id
        var headers = NATSHeaders()
        headers[AgentSubjects.triggerSubjectHeader] = m.subject
        let reply: NATSMessage
        do {
            reply = try await internalNATS.request(
                m.bytes, to: AgentSubjects.trigger(agent: agentID), agent: agentID, headers: headers,
                timeout: .seconds(60))
        } catch {
            await answer(m, body: Array("the function did not answer: \(error)".utf8), error: "\(error)")
            await publishExec(
                workload, subject: m.subject, elapsed: nil, error: "the function did not answer: \(error)")
            return
        }
        let elapsed = reply.headers?[AgentSubjects.elapsedHeader].flatMap { Int64($0) } ?? 0
        if let error = reply.headers?["Nats-Service-Error"] {
            let text = reply.string
            await answer(m, body: reply.bytes, error: error)
            await publishExec(workload, subject: m.subject, elapsed: nil, error: text.isEmpty ? error : text)
        } else {
            await answer(m, body: reply.bytes, error: nil)
            await publishExec(workload, subject: m.subject, elapsed: elapsed, error: nil)
        }
    }

    /// Replies to a request (a plain publish needs no answer). A failure is readable by the requester: the
    /// micro-service error headers plus the error text as the body.
    private nonisolated(nonsending) func answer(_ m: NATSMessage, body: [UInt8], error: String?) async {
        guard let replyTo = m.replyTo else { return }
        var headers: NATSHeaders?
        if let error {
            var h = NATSHeaders()
            h["Nats-Service-Error"] = error
            h["Nats-Service-Error-Code"] = "500"
            headers = h
        }
        do { try await events.client.publish(body, to: replyTo, headers: headers) } catch {
            var failure = NATSHeaders()
            failure["Nats-Service-Error"] = "the function's reply could not be sent: \(error)"
            failure["Nats-Service-Error-Code"] = "500"
            try? await events.client.publish([UInt8](), to: replyTo, headers: failure)
        }
    }

    private nonisolated(nonsending) func publishExec(
        _ workload: Workload, subject: String, elapsed: Int64?, error: String?
    ) async {
        let data = FunctionExecEvent(
            workloadID: workload.id, workloadName: workload.name, namespace: workload.namespace,
            triggerSubject: subject, elapsedNanos: elapsed, error: error)
        await events.publish(
            error == nil ? NexEventType.functionExecSucceeded : NexEventType.functionExecFailed, data,
            namespace: workload.namespace)
    }
}

extension WorkloadManager {
    /// A host-service call of the function an agent runs; the namespace and workload come from the node's
    /// own records, never from the agent's subject.
    func hostCall(agentID: String, service: String, method: String, arguments: [UInt8]) async -> [UInt8] {
        guard let id = agentWorkload(agentID), let workload = workloads(id: id) else {
            return HostServicesBroker.encode(["error": "no workload"])
        }
        return await hostServices.handle(
            namespace: workload.namespace, name: workload.name, service: service, method: method,
            arguments: arguments)
    }
}
