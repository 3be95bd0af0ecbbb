import Foundation
import NATS
import NATSProtocol
import NATSTestSupport
import OTel
import Testing

@testable import NexNode

/// Issue 13, traces: a node with OpenTelemetry's tracer exports over OTLP/HTTP to a local receiver
/// (Tests/Peers/python/otlp_receiver.py). One request that carries a `traceparent` is one trace: the node's
/// trigger span continues it, then the agent, the function and each host-service call, and the request the
/// function makes carries the same trace on.
@Suite(.timeLimit(.minutes(2))) struct NexTracingTests {
    struct ExportedSpan: Decodable {
        var name: String
        var traceID: String
        var spanID: String
        var parentSpanID: String
        var attributes: [String: String]?

        enum CodingKeys: String, CodingKey {
            case name, attributes
            case traceID = "trace_id"
            case spanID = "span_id"
            case parentSpanID = "parent_span_id"
        }
    }

    /// The local OTLP/HTTP receiver (Tests/Peers/python/otlp_receiver.py) and the port it listens on; its
    /// later output lines are the spans and exports it received.
    static func startReceiver() async throws -> (PeerProcess, Int) {
        let receiver = try await PeerProcess.start(
            try #require(TestEnvironment.python),
            [TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/otlp_receiver.py").path])
        let listening = try await receiver.waitForLines(1).first ?? ""
        guard let port = listening.split(separator: " ").last.flatMap({ Int($0) }) else {
            receiver.signal(SIGKILL)
            throw TestEnvironment.Failure("the OTLP receiver did not say its port: \(listening)")
        }
        return (receiver, port)
    }

    @Test func oneRequestIsOneTraceThroughTheFunctionIntoItsHostServiceCalls() async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "run scripts/setup.sh")
        let (receiver, port) = try await NexTracingTests.startReceiver()
        defer { receiver.signal(SIGKILL) }
        var otel = OTel.Configuration.default
        otel.serviceName = "nex-node-test"
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.otlpExporter.endpoint = "http://127.0.0.1:\(port)/v1/traces"
        otel.traces.otlpExporter.protocol = .httpJSON
        otel.traces.batchSpanProcessor.scheduleDelay = .milliseconds(100)
        let (tracer, exporter) = try OTel.makeTracingBackend(configuration: otel)

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do { try await exporter.run() } catch is CancellationError {}  // the test is over
            }
            defer { group.cancelAll() }
            try await NexWorkloadTests().withNode({ $0.workloadTypes = [.v8] }, tracing: NodeTracer(tracer)) { h in
                let source = h.server.directory.appendingPathComponent("traced.js").path
                try """
                (subject, payload) => {
                  this.hostServices.kv.set('seen', payload);
                  return this.hostServices.messaging.request('traced.downstream', payload);
                };
                """.write(toFile: source, atomically: true, encoding: .utf8)
                _ = try await h.deploy(file: source, name: "traced", type: "v8", triggers: ["traced.fn"])
                let downstream = Locked<[NATSHeaders?]>([])
                try await h.client.subscribe(to: "traced.downstream") { m in
                    downstream.withLock { $0.append(m.headers) }
                    try await m.respond(Array("down".utf8), using: h.client)
                }
                try await h.client.flush()

                let caller = TraceParent(header: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")!
                var headers = NATSHeaders()
                headers.traceParent = caller
                let reply = try await h.client.request("x", to: "traced.fn", headers: headers, timeout: .seconds(10))
                #expect(reply.string == "down", "\(reply.string)")

                // The function's request carried the caller's trace on.
                let carried = try #require(downstream.withLock { $0.first }??.traceParent)
                #expect(carried.traceID == caller.traceID && carried.parentSpanID != caller.parentSpanID)

                func spans() -> [ExportedSpan] {
                    receiver.output.dropFirst().compactMap {
                        try? JSONDecoder().decode(ExportedSpan.self, from: Data($0.utf8))
                    }
                }
                // Spans are exported in batches as they end: wait for all five.
                let trace = try await eventuallyValue("the trigger's spans are exported", timeout: .seconds(20)) {
                    let inTrace = spans().filter { $0.traceID == caller.traceID }
                    let names = inTrace.map(\.name)
                    return names.filter { $0 == "nex.hostservice" }.count == 2
                        && Set(names).isSuperset(of: ["nex.trigger", "nex.agent", "nex.function"]) ? inTrace : nil
                }
                func one(_ name: String) throws -> ExportedSpan {
                    let found = trace.filter { $0.name == name }
                    try #require(found.count == 1, "\(name): \(found.count) spans in \(trace.map(\.name))")
                    return found[0]
                }
                let trigger = try one("nex.trigger")
                let agent = try one("nex.agent")
                let function = try one("nex.function")
                #expect(trigger.parentSpanID == caller.parentSpanID)
                #expect(trigger.attributes?["nex.workload"] == "traced")
                #expect(agent.parentSpanID == trigger.spanID)
                #expect(function.parentSpanID == agent.spanID)
                #expect(Int(function.attributes?["nex.function.elapsed_ns"] ?? "") ?? 0 > 0)
                let calls = trace.filter { $0.name == "nex.hostservice" }
                #expect(calls.allSatisfy { $0.parentSpanID == function.spanID })
                #expect(Set(calls.compactMap { $0.attributes?["nex.hostservice.service"] }) == ["kv", "messaging"])
                // The request downstream was sent under the messaging call's span.
                let messaging = calls.first { $0.attributes?["nex.hostservice.service"] == "messaging" }
                #expect(carried.parentSpanID == messaging?.spanID)

                // The deploy pipeline is a trace of its own: download and start under nex.deploy.
                let deploy = try await eventuallyValue("the deploy's spans are exported") {
                    spans().first { $0.name == "nex.deploy" && $0.attributes?["nex.workload"] == "traced" }
                }
                let steps = try await eventuallyValue("the deploy's steps are exported") {
                    let steps = spans().filter { $0.traceID == deploy.traceID && $0.parentSpanID == deploy.spanID }
                    return steps.count >= 2 ? steps : nil
                }
                #expect(Set(steps.map(\.name)) == ["nex.deploy.download", "nex.deploy.start"])
                #expect(steps.first { $0.name == "nex.deploy.download" }?.attributes?["nex.artifact.bytes"] != nil)
            }
        }
    }
}
