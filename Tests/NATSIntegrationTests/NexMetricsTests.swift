import Foundation
import Logging
import NATS
import NATSTestSupport
import NexModels
import NexSandbox
import Testing

@testable import NexNode

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Issue 13, metrics: a sandboxed node serves `/metrics`, a real Prometheus scrapes it, and what the node
/// did (deploys, triggers, host-service calls, sandbox usage, its NATS traffic) reads back through
/// Prometheus's query API.
@Suite(.timeLimit(.minutes(2))) struct NexMetricsTests {
    @Test func prometheusReadsWhatTheNodeDid() async throws {
        try #require(
            TestEnvironment.shouldRun(needing: PrometheusServer.binary != nil && NexSandboxTests.available),
            "prometheus, bubblewrap or cgroups missing (scripts/setup.sh installs them)")
        try await NexSandboxTests().withSandboxedNode { h in
            let listening = AsyncStream<Int>.makeStream()
            let server = NodeMetricsServer(node: h.node, port: 0, logger: Logger(label: "test.metrics")) { port in
                listening.continuation.yield(port)
            }
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    defer { listening.continuation.finish() }
                    try await server.run()
                }
                defer { group.cancelAll() }
                let port = try #require(await listening.stream.first { _ in true }, "the metrics server did not start")

                let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
                _ = try await h.deploy(file: examples + "/kv.js", name: "kvfn", type: "v8", triggers: ["m.kv"])
                let triggers = 7
                for i in 0..<triggers {
                    let reply = try await h.client.request("p\(i)", to: "m.kv", timeout: .seconds(10))
                    #expect(reply.headers?["Nats-Service-Error"] == nil, "\(reply.string)")
                }
                // A malformed deploy is refused, and counted as such.
                _ = try await h.client.request("{", to: "$NEX.DEPLOY.default.\(h.node.nodeID)", timeout: .seconds(5))

                // The exposition itself: types and help as Prometheus expects them.
                let text = try await Self.fetch("http://127.0.0.1:\(port)/metrics")
                #expect(text.contains("# TYPE nex_function_duration_seconds histogram"))
                #expect(text.contains("# TYPE nex_function_triggers_total counter"))
                #expect(text.contains("# TYPE nex_workloads gauge"))

                let prometheus = try await PrometheusServer.start(scraping: ["127.0.0.1:\(port)"])
                do {
                    let ns = #"namespace="default",workload="kvfn""#
                    let expected: [(query: String, holds: (Double) -> Bool)] = [
                        (#"nex_function_triggers_total{\#(ns),outcome="ok"}"#, { $0 == Double(triggers) }),
                        (#"nex_function_duration_seconds_count{\#(ns)}"#, { $0 == Double(triggers) }),
                        // kv.js makes five calls a trigger: set, delete, set, keys, get.
                        (#"nex_host_service_calls_total{service="kv",outcome="ok"}"#, { $0 == Double(5 * triggers) }),
                        (#"nex_deploys_total{outcome="accepted"}"#, { $0 == 1 }),
                        (#"nex_deploys_total{outcome="refused"}"#, { $0 == 1 }),
                        (#"nex_workloads{namespace="default",type="v8"}"#, { $0 == 1 }),
                        // machine_pool_size 1: refilled after the deploy took the warm agent.
                        ("nex_agents_warm", { $0 == 1 }),
                        ("nex_deployed_bytes", { $0 > 0 }),
                        (#"nex_workload_memory_bytes{\#(ns)}"#, { $0 > 0 }),
                        (#"nex_workload_cpu_seconds_total{\#(ns)}"#, { $0 > 0 }),
                        ("nex_nats_in_messages_total", { $0 >= Double(triggers) }),
                        ("nex_nats_out_messages_total", { $0 >= Double(triggers) }),
                        ("nex_nats_in_bytes_total", { $0 > 0 }),
                        ("nex_nats_out_bytes_total", { $0 > 0 }),
                        ("nex_nats_reconnects_total", { $0 == 0 }),
                    ]
                    for (query, holds) in expected {
                        // Prometheus scrapes every second: wait for the sample, then check it.
                        let value = try await eventuallyValue(query, timeout: .seconds(20)) {
                            try await prometheus.value(of: query)
                        }
                        #expect(holds(value), "\(query) = \(value)")
                    }
                    await prometheus.stop()
                } catch {
                    await prometheus.stop()
                    throw error
                }
            }
        }
    }

    /// The `nex` binary's own switches: `--metrics --metrics_port 0` serves /metrics (the log says where), and
    /// `--traces --otlp_exporter_url` exports OTLP protobuf to the collector's `/v1/traces`, flushed at shutdown.
    @Test func nexNodeUpServesMetricsAndExportsTraces() async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "run scripts/setup.sh")
        let (receiver, collector) = try await NexTracingTests.startReceiver()
        defer { receiver.signal(SIGKILL) }
        try await withServerAndClient(.init(jetStream: true)) { server, client in
            let node = try await PeerProcess.start(
                TestEnvironment.builtProduct("nex"),
                [
                    "node", "up", "-s", server.url, "--no-sandbox", "--metrics", "--metrics_port", "0", "--traces",
                    "--otlp_exporter_url", "http://127.0.0.1:\(collector)",
                ],
                environment: ["NEX_HOME": server.directory.appendingPathComponent("home").path])
            let metricsURL = try await eventuallyValue("the metrics address in the log") {
                node.errorOutput.split(separator: "\n").first { $0.contains("serving metrics") }
                    .flatMap { $0.split(separator: " ").first { $0.hasPrefix("url=") } }
                    .map { String($0.dropFirst("url=".count)) }
            }
            let up = try await eventuallyValue("the node is up") { node.output.first { $0.contains(" is up") } }
            let nodeID = try #require(
                up.split(separator: " ").map(String.init).first { $0.hasPrefix("N") && $0.count == 56 })
            // A refused deploy (once the node answers): counted, and a span.
            _ = try await eventuallyValue("the node answers a deploy") {
                try? await client.request("{", to: "$NEX.DEPLOY.default.\(nodeID)", timeout: .seconds(1))
            }
            let text = try await Self.fetch(metricsURL)
            #expect(text.contains(#"nex_deploys_total{outcome="refused"} 1"#), "\(text)")
            #expect(try await node.terminate() == 0)
            let export = try await eventuallyValue("an OTLP export") {
                receiver.output.dropFirst().first { $0.contains("received") }
            }
            #expect(export.contains(#""path": "/v1/traces""#) && export.contains("application/x-protobuf"), "\(export)")
        }
    }

    static func fetch(_ url: String) async throws -> String {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else { throw TestEnvironment.Failure("GET \(url) answered \(status)") }
        return String(decoding: data, as: UTF8.self)
    }
}
