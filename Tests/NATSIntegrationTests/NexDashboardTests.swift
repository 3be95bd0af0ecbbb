import Foundation
import NATS
import NATSTestSupport
import NexModels
import Testing

@testable import NexNode

/// Issue 13, the dashboard: the real `nex ui` binary, opened in headless Chromium (Debian's, driven over
/// the DevTools protocol by Tests/Peers/python/browser.py), shows a node's function and service, the
/// function's events and rate, and stops the service from the page.
@Suite(.timeLimit(.minutes(2))) struct NexDashboardTests {
    static var chromium: String? {
        ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    /// Four requests to the dashboard on port argv[1]; prints each status.
    static let crossSiteProbe = """
        import http.client, sys
        port = int(sys.argv[1])
        def ask(method, path, headers, body=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request(method, path, body=body, headers=headers)
            return c.getresponse().status
        json = "application/json"
        print(ask("GET", "/api/overview", {"Host": "evil.example:%d" % port}))
        print(ask("POST", "/api/stop", {"Host": "127.0.0.1:%d" % port, "Origin": "http://evil.example",
                                        "Content-Type": json}, "{}"))
        print(ask("POST", "/api/stop", {"Host": "127.0.0.1:%d" % port, "Content-Type": "text/plain"}, "{}"))
        print(ask("GET", "/api/overview", {"Host": "localhost:%d" % port}))
        """

    @Test func thePageShowsWorkloadsEventsAndRatesAndStopsAService() async throws {
        try #require(
            TestEnvironment.shouldRun(needing: Self.chromium != nil && TestEnvironment.python != nil),
            "chromium or the project's python missing (scripts/setup.sh installs them)")
        try await NexWorkloadTests().withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let examples = TestEnvironment.packageRoot.appendingPathComponent("examples").path
            _ = try await h.deploy(
                file: examples + "/echofunction.js", name: "echofunction", type: "v8", triggers: ["ui.echo"])
            let service = try await h.deploy(
                file: NexWorkloadTests.echoService, name: "echoservice", environment: ["nats_url": h.server.url])

            // The page stops with the issuer that deployed: the CLI's --issuer seed file.
            let issuerFile = h.server.directory.appendingPathComponent("issuer.nk").path
            try #require(h.issuer.seed).write(toFile: issuerFile, atomically: true, encoding: .utf8)
            let ui = try await PeerProcess.start(
                TestEnvironment.builtProduct("nex"),
                ["ui", "-s", h.server.url, "--port", "0", "--issuer", issuerFile])
            let listening = try await eventuallyValue("nex ui listens") {
                ui.output.first { $0.hasPrefix("Dashboard on http://") }
            }
            let url = try #require(listening.split(separator: " ").first { $0.hasPrefix("http://") }.map(String.init))

            let screenshot = TestEnvironment.packageRoot.appendingPathComponent(".build/dashboard.png").path
            let rate = #"tr[data-function="default/echofunction"] td.rate"#
            let browser = try await PeerProcess.start(
                try #require(TestEnvironment.python),
                [
                    TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/browser.py").path,
                    try #require(Self.chromium), url,
                    #"text:tr[data-workload="echofunction"]=v8"#,
                    #"text:tr[data-workload="echoservice"]=native"#,
                    "text:#nodes=\(h.node.nodeID.prefix(6))",
                    "text:#events=function_exec_succeeded",
                    "until:parseFloat(document.querySelector('\(rate)')?.textContent || '0') > 0",
                    #"click:tr[data-workload="echofunction"] button.link"#,
                    "text:#logs=triggered on ui.echo",
                    "screenshot:\(screenshot)",
                    #"click:tr[data-workload="echoservice"] button[data-action=stop]"#,
                    "text:#notice=stopped echoservice",
                ])
            // Triggers keep coming while the page loads and subscribes (bounded: 300 at most, and they end
            // with the browser).
            let status = try await withThrowingTaskGroup(of: Int32?.self) { group in
                group.addTask {
                    for _ in 0..<300 {
                        do {
                            _ = try await h.client.request("hi", to: "ui.echo", timeout: .seconds(2))
                            try await Task.sleep(for: .milliseconds(100))
                        } catch {
                            if !Task.isCancelled { Issue.record("the function did not answer: \(error)") }
                            return nil
                        }
                    }
                    return nil
                }
                defer { group.cancelAll() }
                return try await browser.waitForExit(timeout: .seconds(100))
            }
            #expect(status == 0, "browser: \(browser.output) \(browser.errorOutput)")

            // The stop was real: the node no longer runs the service, and still runs the function.
            let info = try await h.nex.info(node: h.node.nodeID)
            #expect(!info.machines.contains { $0.workload.id == service.id })
            #expect(info.machines.contains { $0.workload.name == "echofunction" })
            // Another site's page cannot use it: not under another name (DNS rebinding), not from another
            // origin, not as a form. The page's own requests (above) and this machine's names work.
            let port = try #require(url.split(separator: ":").last?.split(separator: "/").first.map(String.init))
            let statuses = try await TestEnvironment.run(
                try #require(TestEnvironment.python), ["-c", Self.crossSiteProbe, port])
            #expect(statuses.split(separator: "\n") == ["403", "403", "403", "200"], "\(statuses)")
            #expect(try await ui.terminate() == 0)
        }
    }
}
