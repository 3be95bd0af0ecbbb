import NATS
public import Tracing

/// The node's spans: OpenTelemetry's tracer when `otel_traces` is on (the executable makes it), else one
/// that records nothing. Trace context crosses NATS as W3C `traceparent` headers, and the agent link as
/// the same text.
public struct NodeTracer: Sendable {
    let tracer: any Tracer
    /// False for the no-op tracer: callers skip building attributes and headers.
    let isRecording: Bool

    /// Spans go to `tracer`; the default records nothing.
    public init(_ tracer: any Tracer = NoOpTracer()) {
        self.tracer = tracer
        self.isRecording = !(tracer is NoOpTracer)
    }

    /// The caller's trace, from a message's headers (a top-level context when it has none).
    func context(from headers: NATSHeaders?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if isRecording, let headers { tracer.extract(headers, into: &context, using: NATSHeadersExtractor()) }
        return context
    }

    /// Starts a span under `parent`.
    func start(_ name: String, parent: ServiceContext, kind: SpanKind = .internal) -> any Span {
        tracer.startSpan(name, context: parent, ofKind: kind)
    }

    /// `headers` with `context`'s `traceparent` added (nil stays nil when nothing records).
    func headers(carrying context: ServiceContext, in headers: NATSHeaders? = nil) -> NATSHeaders? {
        guard isRecording else { return headers }
        var carried = headers ?? NATSHeaders()
        tracer.inject(context, into: &carried, using: NATSHeadersInjector())
        return carried.isEmpty ? headers : carried
    }

    /// `context`'s `traceparent` text, for carriers that are not NATS headers (the agent link, HTTP).
    func traceParent(of context: ServiceContext) -> String? {
        headers(carrying: context)?[TraceParent.headerName]
    }
}
