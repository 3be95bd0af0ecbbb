import NATS
import Tracing

/// The spans of one trigger: `nex.trigger` (a consumer span, continuing the caller's `traceparent`),
/// `nex.agent` (the link round trip) and `nex.function` (the function's run). The agent runs one trigger at a
/// time, so a trigger may wait behind another before it runs: the function span covers the whole call (its
/// host-service calls, parented on its `traceparent`, fall inside it) and carries the function's own time,
/// as the agent measured it, as `nex.function.elapsed_ns`.
struct TriggerSpans {
    let trigger: any Span
    let agent: any Span
    let function: any Span
    /// What the agent hands on with the function's host-service calls (nil when nothing records).
    let traceParent: String?

    init(_ tracing: NodeTracer, message: NATSMessage, workload: FunctionTarget) {
        trigger = tracing.start("nex.trigger", parent: tracing.context(from: message.headers), kind: .consumer)
        if tracing.isRecording {
            trigger.attributes["messaging.system"] = "nats"
            trigger.attributes["messaging.destination.name"] = message.subject
            trigger.attributes["nex.namespace"] = workload.namespace
            trigger.attributes["nex.workload"] = workload.name
            trigger.attributes["nex.workload_id"] = workload.id
        }
        agent = tracing.start("nex.agent", parent: trigger.context, kind: .client)
        function = tracing.start("nex.function", parent: agent.context)
        traceParent = tracing.traceParent(of: function.context)
    }

    /// Ends the agent's and the function's spans: `failure` marks the three failed; `elapsedNanos` is the
    /// function's own time, when known. The trigger's span is ended by the caller, once it answered.
    func endCall(failure: String?, elapsedNanos: Int64?) {
        if let elapsedNanos { function.attributes["nex.function.elapsed_ns"] = Int(elapsedNanos) }
        if let failure {
            for span in [function, agent, trigger] { span.setStatus(.init(code: .error, message: failure)) }
        }
        function.end()
        agent.end()
    }
}
