import Foundation
import Testing

@testable import NexNode

func parse(_ json: String) throws -> NodeConfiguration { try NodeConfiguration.parse(Data(json.utf8)) }

@Suite struct NodeConfigurationTests {
    @Test func defaultsFollowNex() throws {
        let c = try parse("{}")
        #expect(c.machinePoolSize == 1 && c.machineTemplate.vcpuCount == 1 && c.machineTemplate.memsizeMib == 256)
        #expect(c.noSandbox == false && c.sandbox == .auto && c.workloadTypes == [.native, .v8, .wasm])
        #expect(c.agentHandshakeTimeoutMs == 25_000 && c.agentPingTimeoutMs == 750)
        #expect(c.nodeLimits.maxWorkloads == nil && c.validIssuers.isEmpty)
    }

    @Test func readsTheNexKeys() throws {
        let c = try parse(
            """
            {"machine_pool_size": 3, "machine_template": {"vcpu_count": 2, "memsize_mib": 512},
             "no_sandbox": true, "workload_types": ["native", "v8", "wasm"], "allow_duplicate_workloads": true,
             "deny_trigger_subjects": ["secret.>"], "tags": {"zone": "eu"},
             "valid_issuers": ["ACA3F2EW6SNIMMVE6OSYZVJWZYTYSQIS37SMGX4L26IWTR3BBILHSAWN"],
             "node_limits": {"max_workloads": 10, "max_total_bytes": 1000000},
             "host_services_config": {"nats": {"nats_url": "nats://hs:4222"},
                                      "services": {"kv": {"enabled": true}, "http": {"enabled": false}}},
             "autostart": {"workloads": [{"name": "echo", "type": "native", "location": "nats://B/echo",
                                          "environment": {"A": "1"}, "essential": true}]},
             "otel_metrics": false}
            """)
        #expect(c.machinePoolSize == 3 && c.machineTemplate.memsizeMib == 512 && c.noSandbox)
        #expect(c.workloadTypes == [.native, .v8, .wasm] && c.denyTriggerSubjects == ["secret.>"])
        #expect(c.nodeLimits.maxWorkloads == 10 && c.nodeLimits.maxTotalBytes == 1_000_000)
        #expect(c.hostServicesConfig?.nats?.natsURL == "nats://hs:4222")
        #expect(c.hostServicesConfig?.services?["kv"]?.enabled == true)
        #expect(c.autostart?.workloads.first?.environment == ["A": "1"])
    }

    @Test(arguments: [
        (#"{"machine_pool_sise": 2}"#, "machine_pool_sise"),
        (#"{"machine_template": {"vcpus": 2}}"#, "machine_template.vcpus"),
        (#"{"node_limits": {"max_memory": 1}}"#, "node_limits.max_memory"),
        (#"{"host_services_config": {"nats": {"url": "x"}}}"#, "host_services_config.nats.url"),
        (#"{"host_services_config": {"services": {"ftp": {"enabled": true}}}}"#, "host_services_config.services.ftp"),
    ])
    func unknownKeysAreNamed(_ json: String, _ key: String) {
        #expect(throws: NodeConfigurationError.unknownKey(key)) { try parse(json) }
    }

    @Test(arguments: [
        #"{"machine_pool_size": "three"}"#, #"{"machine_pool_size": 0}"#, #"{"sandbox": "docker"}"#,
        #"{"workload_types": ["python"]}"#, #"{"valid_issuers": ["UABC"]}"#, #"{"tags": {"nex.os": "x"}}"#,
        "not json", #"{"machine_template": {"memsize_mib": 1}}"#, #"{"otel_metrics_port": 70000}"#,
        #"{"otel_metrics": true, "otel_metrics_exporter": "otlp"}"#, #"{"otel_metrics": "yes"}"#,
        #"{"otel_traces": true, "otel_traces_exporter": "grpc"}"#,
        #"{"otel_traces": true, "otlp_exporter_url": "ftp://collector"}"#,
    ])
    func badValuesAreClearErrors(_ json: String) {
        let error = #expect(throws: NodeConfigurationError.self) { try parse(json) }
        #expect(error?.description.isEmpty == false)
    }

    @Test func readsTheMetricsKeys() throws {
        let c = try parse(
            #"{"otel_metrics": true, "otel_metrics_port": 0, "otel_metrics_host": "0.0.0.0", "otel_metrics_exporter": "prometheus"}"#
        )
        #expect(c.otelMetrics == true && c.otelMetricsPort == 0 && c.otelMetricsHost == "0.0.0.0")
    }

    /// Nex's own observability values load while the features are off, and its scheme-less URL is read as HTTP.
    @Test func nexObservabilityValuesLoad() throws {
        let nex = try parse(
            #"{"otel_metrics_exporter": "file", "otel_traces_exporter": "file", "otlp_exporter_url": "127.0.0.1:14532"}"#
        )
        #expect(nex.otlpTracesEndpoint == "http://127.0.0.1:14532/v1/traces")
        #expect(try parse("{}").otlpTracesEndpoint == "http://127.0.0.1:4318/v1/traces")
        #expect(
            try parse(#"{"otlp_exporter_url": "https://c.example/otlp/v1/traces"}"#).otlpTracesEndpoint
                == "https://c.example/otlp/v1/traces")
        #expect(try parse(#"{"otel_traces": true, "otel_traces_exporter": "http"}"#).otelTraces == true)
    }

    @Test func typeErrorsSayWhere() {
        #expect(throws: NodeConfigurationError.invalid("machine_template.vcpu_count should be a whole number")) {
            try parse(#"{"machine_template": {"vcpu_count": true}}"#)
        }
    }

    @Test func theHTTPAllowListIsCheckedWhenTheConfigurationIsRead() throws {
        let allowing = try parse(
            #"{"host_services_config": {"services": {"http": {"enabled": true, "config": {"allow": "10.0.0.0/8"}}}}}"#)
        #expect(allowing.hostServicesConfig?.egressPolicy.rules.count == 1)
        let error = #expect(throws: NodeConfigurationError.self) {
            try parse(
                #"{"host_services_config": {"services": {"http": {"enabled": true, "config": {"allow": "x/9"}}}}}"#)
        }
        #expect(
            error?.description.contains("services.http.config.allow: \"x/9\"") == true, "\(String(describing: error))")
    }

    @Test func missingFileIsUnreadable() {
        #expect(throws: NodeConfigurationError.self) { try NodeConfiguration.load(path: "/nonexistent/node.json") }
    }
}

/// The strict JSON check under the configuration: every malformed text is refused at its place.
@Suite struct StrictJSONTests {
    func failure(_ text: String) -> StrictJSON.Failure? {
        do {
            try StrictJSON.check(Array(text.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: [
        ("{\"a\": 1,}", 1, 8, "trailing comma"),
        ("[1, 2,\n]", 1, 6, "trailing comma"),
        ("{\"a\": 1}\n{", 2, 1, "more text"),
        ("{'a': 1}", 1, 2, "key in double quotes"),
        ("{\"a\" 1}", 1, 6, "colon"),
        ("{\"a\": 01}", 1, 8, "may not start with 0"),
        ("{\"a\": 1.}", 1, 9, "decimal point"),
        ("{\"a\": tru}", 1, 7, "value was expected"),
        ("{\"a\": \"x\ty\"}", 1, 9, "control character"),
        ("{\"a\": \"\\q\"}", 1, 9, "unknown escape"),
        ("{\"é\": 1, \"é\": 2}", 1, 10, "appears twice"),
        ("{\"a\": [1 2]}", 1, 10, "comma or ]"),
        ("", 1, 1, "text ends"),
    ])
    func malformedTextIsRefusedWhereItBreaks(text: String, line: Int, column: Int, reason: String) {
        let failure = self.failure(text)
        #expect(failure?.line == line && failure?.column == column, "\(String(describing: failure))")
        #expect(failure?.reason.contains(reason) == true, "\(String(describing: failure))")
    }

    @Test func validTextPasses() {
        for text in [
            "{}", "[]", "\u{FEFF}{\"a\": [1, -2.5e3, true, false, null, \"\\u00e9\\n\"]}", " 0 ", "{\"a\":{\"b\":{}}}",
        ] {
            #expect(failure(text) == nil, "\(text)")
        }
    }
}
