import Foundation
import NATS
import NexAgentLink
import NexModels
import Tracing

/// Functions: each trigger subject is a queue subscription on the node's NATS connection (so instances on
/// every node share the load); a message is handed to the function's agent with its real subject, and the
/// answer goes back to the requester.
extension WorkloadManager {
    /// The queue group of a function's instances.
    static func queueGroup(namespace: String, name: String) -> String { "nex-\(namespace)-\(name)" }

    /// Subscribes each trigger subject, in its own queue group or else in the workload's.
    nonisolated func subscribeTriggers(of workload: FunctionTarget, subjects: [SubjectTrigger]) async throws
        -> [NATSSubscription]
    {
        guard !subjects.isEmpty else { return [] }
        let client = events.client
        let workloadQueue = Self.queueGroup(namespace: workload.namespace, name: workload.name)
        var subs: [NATSSubscription] = []
        do {
            for trigger in subjects {
                let (subject, queue) = (trigger.subject, trigger.queue ?? workloadQueue)
                // Each trigger is a task of its own on the client's event loop, off the manager actor: up to the
                // function's concurrency run at once, and a queue's worth more wait in its agent's link.
                let loop = client.taskExecutor
                subs.append(
                    try await client.subscribe(to: subject, queue: queue) { m in
                        guard workload.admission.enter() else {
                            await self.refuseOverloaded(m, workload: workload)
                            return
                        }
                        let started = self.tasks.spawn(on: loop) {
                            defer { workload.admission.leave() }
                            await self.runTrigger(m, workload: workload)
                        }
                        if started == nil { workload.admission.leave() }  // the node is stopping
                    })
            }
            try await client.flush()
        } catch {
            // None may stay in the queue group: they would take requests for an agent about to go.
            for sub in subs { try? await sub.unsubscribe() }
            throw error
        }
        return subs
    }

    /// Hands a message to the function's agent over its private link (no server hop) and answers.
    ///
    /// Spans, continuing the caller's trace when the message carries a `traceparent`: `nex.trigger` (the node
    /// took the message, until it answered) → `nex.agent` (the round trip to the agent) → `nex.function` (the
    /// function's run, with its own time as the agent measured it) → the function's host-service calls.
    nonisolated(nonsending) func runTrigger(_ m: NATSMessage, workload: FunctionTarget) async {
        let spans = TriggerSpans(tracing, message: m, workload: workload)
        let reply: AgentLinkClient.Reply
        do {
            reply = try await workload.link.trigger(
                subject: m.subject, payload: m.bytes, traceParent: spans.traceParent, timeout: .seconds(60))
        } catch {
            spans.endCall(failure: "the function did not answer: \(error)", elapsedNanos: nil)
            metrics.functionTriggered(
                namespace: workload.namespace, workload: workload.name, succeeded: false, elapsedNanos: nil)
            await answer(
                m, workload: workload, body: Array("the function did not answer: \(error)".utf8), error: "\(error)")
            await publishExec(
                workload, subject: m.subject, elapsed: nil, error: "the function did not answer: \(error)")
            spans.trigger.end()
            return
        }
        // The trigger span lasts until the answer and the event are queued for the socket.
        defer { spans.trigger.end() }
        spans.endCall(
            failure: reply.ok ? nil : String(decoding: reply.body.prefix(200), as: UTF8.self),
            elapsedNanos: reply.elapsedNanos)
        metrics.functionTriggered(
            namespace: workload.namespace, workload: workload.name, succeeded: reply.ok,
            elapsedNanos: reply.elapsedNanos)
        let text = reply.ok ? nil : String(decoding: reply.body, as: UTF8.self)
        // The header carries the first line (message); the body the whole text (with the stack).
        await answer(
            m, workload: workload, body: reply.body,
            error: text.map { String($0.split(separator: "\n").first ?? "function failed") })
        // Queued behind the answer before the loop flushes it: the two go out in one write. (Flushed apart, the
        // event's own write came within the client's coalescing window and cost a timer, a second write and
        // another wake-up of the server for every trigger.)
        await publishExec(workload, subject: m.subject, elapsed: reply.ok ? reply.elapsedNanos : nil, error: text)
    }

    /// Answers a trigger that found the function's queue full, without bothering its agent.
    private nonisolated(nonsending) func refuseOverloaded(_ m: NATSMessage, workload: FunctionTarget) async {
        let text =
            "the function \(workload.name) is overloaded: \(workload.admission.running) triggers running and "
            + "\(workload.admission.queued) waiting; retry later, or deploy it with a higher max_concurrency or on "
            + "more nodes"
        metrics.functionTriggered(
            namespace: workload.namespace, workload: workload.name, succeeded: false, elapsedNanos: nil)
        await answer(m, workload: workload, body: Array(text.utf8), error: text, code: 503)
        await publishExec(workload, subject: m.subject, elapsed: nil, error: text)
    }

    /// Replies to a request (a plain publish needs no answer). A failure is readable by the requester: the
    /// micro-service error headers plus the error text as the body.
    ///
    /// The reply subject is the triggering side's choice and the answer goes out on the node's connection, so it
    /// passes the subject policy first: a reply "to" `$KV.…` or `$JS.API.…` would write with the node's
    /// permissions. A refused one gets no answer, and is counted.
    private nonisolated(nonsending) func answer(
        _ m: NATSMessage, workload: FunctionTarget, body: [UInt8], error: String?, code: Int = 500
    ) async {
        guard let replyTo = m.replyTo else { return }
        if let refusal = subjectPolicy.replyRefusal(replyTo, namespace: workload.namespace) {
            metrics.subjectRefused(refusal)
            logger.debug(
                "a trigger's reply subject is refused; no answer sent",
                metadata: ["nats.subject": "\(m.subject)", "reason": "\(refusal)"])
            return
        }
        var headers: NATSHeaders?
        if let error {
            var h = NATSHeaders()
            h["Nats-Service-Error"] = error
            h["Nats-Service-Error-Code"] = "\(code)"
            headers = h
        }
        do { try await events.client.publish(body, to: replyTo, headers: headers) } catch {
            var failure = NATSHeaders()
            failure["Nats-Service-Error"] = "the function's reply could not be sent: \(error)"
            failure["Nats-Service-Error-Code"] = "500"
            do { try await events.client.publish([UInt8](), to: replyTo, headers: failure) } catch {
                logger.warning(
                    "a function's reply could not be sent; the caller will time out",
                    metadata: ["nats.subject": "\(m.subject)", "error": "\(error)"])
            }
        }
    }

    private nonisolated(nonsending) func publishExec(
        _ workload: FunctionTarget, subject: String, elapsed: Int64?, error: String?
    ) async {
        await events.publishExec(
            FunctionExecEvent(
                workloadID: workload.id, workloadName: workload.name, namespace: workload.namespace,
                triggerSubject: subject, elapsedNanos: elapsed, error: error))
    }
}

extension WorkloadManager {
    /// A host-service call of the function an agent runs; the namespace and workload come from the node's
    /// own records, never from what the agent says.
    func hostCall(agentID: String, _ call: LinkFrame.HostCall) async -> HostServicesBroker.Answer {
        let (service, method) = (call.service, call.method)
        // An ending workload has released its host services: a call now would open them again.
        guard let entry = workload(agent: agentID), entry.isPresent else {
            return .failure("\(service).\(method): the agent runs no workload", .error)
        }
        let headers: NATSHeaders? = call.traceParent.map { [TraceParent.headerName: $0] }
        // A child of the function's span (the agent sends its traceparent), whose context the call's own
        // messages and requests carry on.
        let span = tracing.start(
            "nex.hostservice", parent: tracing.context(from: headers), kind: .client)
        span.attributes["nex.hostservice.service"] = service
        span.attributes["nex.hostservice.method"] = method
        span.attributes["nex.namespace"] = entry.record.namespace
        span.attributes["nex.workload"] = entry.record.name
        defer { span.end() }
        // The service name comes from the workload: only known ones become metric labels.
        let serviceLabel = HostServicesBroker.services.contains(service) ? service : "unknown"
        let broker: HostServicesBroker
        do {
            broker = try await hostServices.broker(
                workloadID: entry.id, deploy: entry.record.request.hostServicesConfig)
        } catch {
            span.setStatus(.init(code: .error, message: "unreachable"))
            metrics.hostServiceCall(service: serviceLabel, outcome: .unreachable)
            return .failure("\(service).\(method): cannot reach the host services server: \(error)", .unreachable)
        }
        let answer = await broker.handle(
            namespace: entry.record.namespace, name: entry.record.name, service: service, method: method,
            arguments: call.arguments, trace: tracing.headers(carrying: span.context))
        if answer.outcome != .ok { span.setStatus(.init(code: .error, message: answer.outcome.rawValue)) }
        metrics.hostServiceCall(service: serviceLabel, outcome: answer.outcome)
        return answer
    }
}
