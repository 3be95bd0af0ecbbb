import NATS
import Tracing

/// The spans of one trigger: `nex.trigger` (a consumer span, continuing the caller's `traceparent`),
/// `nex.agent` (the link round trip) and `nex.function` (the function's own time). The function's span
/// starts when the trigger is sent and ends after the time the agent measured, so host-service calls made
/// meanwhile, parented on its `traceparent`, fall inside it.
struct TriggerSpans {
    let trigger: any Span
    let agent: any Span
    let function: any Span
    let sent: DefaultTracerClock.Instant
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
        sent = DefaultTracerClock.now
        function = tracing.tracer.startSpan("nex.function", context: agent.context, ofKind: .internal, at: sent)
        traceParent = tracing.traceParent(of: function.context)
    }

    /// Ends the three: `failure` marks them failed; `elapsedNanos` is the function's own time, when known.
    func end(failure: String?, elapsedNanos: Int64?) {
        let received = DefaultTracerClock.now
        let ran =
            elapsedNanos.map { UInt64(max(0, $0)) } ?? (received.nanosecondsSinceEpoch - sent.nanosecondsSinceEpoch)
        let functionEnd = DefaultTracerClock.Instant(
            nanosecondsSinceEpoch: min(received.nanosecondsSinceEpoch, sent.nanosecondsSinceEpoch + ran))
        if let failure {
            for span in [function, agent, trigger] { span.setStatus(.init(code: .error, message: failure)) }
        }
        function.end(at: functionEnd)
        agent.end(at: received)
        trigger.end()
    }
}
