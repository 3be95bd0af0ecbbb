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

    static func fetch(_ url: String) async throws -> String {
        let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else { throw TestEnvironment.Failure("GET \(url) answered \(status)") }
        return String(decoding: data, as: UTF8.self)
    }
}
