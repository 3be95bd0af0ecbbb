import Foundation
import NexProcess

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real Prometheus server (Debian's `prometheus`, installed by `scripts/setup.sh`) for tests: its own temp
/// directory, on an ephemeral loopback port read from its log, scraping the given targets every second.
/// It dies with this process; ``stop()`` ends it sooner.
public final class PrometheusServer: Sendable {
    /// `http://127.0.0.1:PORT`.
    public let url: String
    private let process: ChildProcess
    private let directory: URL

    private init(url: String, process: ChildProcess, directory: URL) {
        self.url = url
        self.process = process
        self.directory = directory
    }

    /// The binary: `PROMETHEUS_BIN`, else `/usr/bin/prometheus`; nil when neither exists.
    public static var binary: String? {
        let path = ProcessInfo.processInfo.environment["PROMETHEUS_BIN"] ?? "/usr/bin/prometheus"
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second, and waits until it
    /// listens.
    public static func start(scraping targets: [String]) async throws -> PrometheusServer {
        guard let binary else {
            throw TestEnvironment.Failure("prometheus not found at /usr/bin/prometheus: run scripts/setup.sh")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("prometheus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let quoted = targets.map { "\"\($0)\"" }.joined(separator: ", ")
        let config = """
            global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }
            scrape_configs:
              - job_name: nex
                static_configs: [ { targets: [\(quoted)] } ]

            """
        try config.write(to: directory.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        // Port 0 binds any free port; Prometheus logs the real one: `msg="Listening on" address=127.0.0.1:N`.
        let logged = try await LoggedServer.start(
            binary,
            [
                "--config.file=\(directory.path)/prometheus.yml", "--web.listen-address=127.0.0.1:0",
                "--storage.tsdb.path=\(directory.path)/data", "--log.level=info",
            ],
            directory: directory.path, name: "prometheus"
        ) { line in
            guard line.contains("msg=\"Listening on\""), let range = line.range(of: "address=") else { return nil }
            return String(line[range.upperBound...].prefix { !$0.isWhitespace })
        }
        let process = logged.process
        let address = logged.address
        func log() -> String { logged.lines.suffix(40).joined(separator: "\n") }
        let server = PrometheusServer(url: "http://\(address)", process: process, directory: directory)
        // It listens before its storage is open, and answers 503 until then.
        let deadline = ContinuousClock.now + .seconds(30)
        var lastAnswer = "no answer"
        while ContinuousClock.now < deadline {
            do {
                let (_, response) = try await URLSession.shared.data(from: URL(string: server.url + "/-/ready")!)
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if status == 200 { return server }
                lastAnswer = "HTTP \(status)"
            } catch { lastAnswer = "\(error)" }
            try await Task.sleep(for: .milliseconds(50))
        }
        await server.stop()
        throw TestEnvironment.Failure("prometheus did not get ready (\(lastAnswer)):\n\(log())")
    }

    /// The value of an instant query that returns one sample (`sum(…)` of a counter, say); nil when it
    /// returns none yet, an error when it returns several (the query is not specific enough).
    public func value(of query: String) async throws -> Double? {
        var components = URLComponents(string: url + "/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: query)]
        let (data, _) = try await URLSession.shared.data(from: components.url!)
        struct Answer: Decodable {
            struct Data: Decodable {
                struct Sample: Decodable { var value: [Value] }
                var result: [Sample]
            }
            enum Value: Decodable {
                case time(Double)
                case text(String)
                init(from decoder: any Decoder) throws {
                    let c = try decoder.singleValueContainer()
                    if let t = try? c.decode(Double.self) {  // not a number: the text form below
                        self = .time(t)
                    } else {
                        self = .text(try c.decode(String.self))
                    }
                }
            }
            var status: String
            var data: Data?
            var error: String?
        }
        let answer: Answer
        do { answer = try JSONDecoder().decode(Answer.self, from: data) } catch {
            throw TestEnvironment.Failure(
                "prometheus answered \(query) with: \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        guard answer.status == "success", let result = answer.data?.result else {
            throw TestEnvironment.Failure("prometheus query \(query) failed: \(answer.error ?? "no data")")
        }
        guard let sample = result.first else { return nil }
        guard result.count == 1 else {
            throw TestEnvironment.Failure("prometheus query \(query) returned \(result.count) series, not one")
        }
        guard sample.value.count == 2, case .text(let text) = sample.value[1], let value = Double(text) else {
            throw TestEnvironment.Failure("prometheus query \(query) returned an unreadable sample")
        }
        return value
    }

    /// Stops Prometheus (SIGTERM; it exits cleanly) and removes its directory.
    public func stop() async {
        _ = await process.terminate(grace: .seconds(5))
        try? FileManager.default.removeItem(at: directory)  // best effort: a temp folder left fails no test
    }
}
