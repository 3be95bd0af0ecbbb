public import Instrumentation
public import NATSProtocol

/// Writes a trace context into message headers, for `Instrument.inject` (swift-distributed-tracing): with
/// an OpenTelemetry tracer, the W3C `traceparent` (and `tracestate`) headers.
///
/// ```swift
/// var headers = NATSHeaders()
/// InstrumentationSystem.instrument.inject(ServiceContext.current ?? .topLevel, into: &headers,
///                                         using: NATSHeadersInjector())
/// try await client.publish(payload, to: "orders.new", headers: headers)
/// ```
public struct NATSHeadersInjector: Injector {
    public init() {}

    public func inject(_ value: String, forKey key: String, into headers: inout NATSHeaders) {
        headers.remove(key)
        headers.append(key, value)
    }
}

/// Reads a trace context from message headers, for `Instrument.extract`, so a consumer's spans continue
/// the publisher's trace:
///
/// ```swift
/// var context = ServiceContext.topLevel
/// if let headers = message.headers {
///     InstrumentationSystem.instrument.extract(headers, into: &context, using: NATSHeadersExtractor())
/// }
/// ```
public struct NATSHeadersExtractor: Extractor {
    public init() {}

    /// The value of `key`; names are compared without case when no exact match exists (Go's
    /// `http.Header`-style carriers send `Traceparent`).
    public func extract(key: String, from headers: NATSHeaders) -> String? {
        headers[key] ?? headers.first { $0.name.lowercased() == key.lowercased() }?.value
    }
}
