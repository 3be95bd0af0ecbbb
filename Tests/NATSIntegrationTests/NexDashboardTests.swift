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

    /// Requests to the dashboard on port argv[1] whose token is argv[2]; prints each status. The last stop
    /// names a running workload (node argv[3], id argv[4]) and carries everything but the token.
    static let crossSiteProbe = """
        import http.client, sys
        port, token, node, workload = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        def ask(method, path, headers, body=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r
        json = "application/json"
        bearer = "Bearer " + token
        local = "127.0.0.1:%d" % port
        print(ask("GET", "/api/overview", {"Host": "evil.example:%d" % port, "Authorization": bearer}).status)
        print(ask("POST", "/api/stop", {"Host": local, "Origin": "http://evil.example", "Content-Type": json,
                                        "Authorization": bearer}, "{}").status)
        print(ask("POST", "/api/stop", {"Host": local, "Content-Type": "text/plain", "Authorization": bearer},
                  "{}").status)
        print(ask("GET", "/api/overview", {"Host": "localhost:%d" % port, "Authorization": bearer}).status)
        print(ask("GET", "/api/overview", {"Host": local}).status)
        print(ask("GET", "/api/overview", {"Host": local, "Cookie": "nex_ui_%d=%s" % (port, "0" * 64)}).status)
        print(ask("GET", "/", {"Host": local}).status)
        stop = '{"node": "%s", "workload_id": "%s"}' % (node, workload)
        print(ask("POST", "/api/stop", {"Host": local, "Content-Type": json}, stop).status)
        login = ask("GET", "/?token=" + token, {"Host": local})
        print(login.status, login.getheader("Location"), login.getheader("Set-Cookie"))
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

            // Another site's page cannot use it: not under another name (DNS rebinding), not from another
            // origin, not as a form. Nobody without the token can: not another local process stopping the
            // function with a plain JSON POST, nor a wrong cookie. The page's own requests (above) and this
            // machine's names with the token work, and the token's URL sets a strict, HttpOnly cookie.
            let port = try #require(url.split(separator: ":").last?.split(separator: "/").first.map(String.init))
            let token = try #require(url.split(separator: "=").last.map(String.init))
            let function = try #require(
                try await h.nex.info(node: h.node.nodeID).machines.first { $0.workload.name == "echofunction" })
            let statuses = try await TestEnvironment.run(
                try #require(TestEnvironment.python),
                ["-c", Self.crossSiteProbe, port, token, h.node.nodeID, function.workload.id])
            #expect(
                statuses.split(separator: "\n").map(String.init) == [
                    "403", "403", "403", "200", "401", "401", "401", "401",
                    "303 / nex_ui_\(port)=\(token); Path=/; HttpOnly; SameSite=Strict",
                ], "\(statuses)")
            // The stop from the page was real, and the one without the token was not: the node no longer runs
            // the service, and still runs the function.
            let info = try await h.nex.info(node: h.node.nodeID)
            #expect(!info.machines.contains { $0.workload.id == service.id })
            #expect(info.machines.contains { $0.workload.id == function.workload.id })
            #expect(try await ui.terminate() == 0)
        }
    }

    /// On an IPv6 address: the `Host` check takes the bracketed form a client sends, and the token is the one
    /// `NEX_UI_TOKEN` gives (the URL printed says so).
    @Test func anIPv6DashboardAnswersItsOwnNameAndTheTokenFromTheEnvironment() async throws {
        let python = try #require(TestEnvironment.python, "run scripts/setup.sh")
        try #require(Self.ipv6LoopbackWorks, "this machine has no ::1")
        try await withServerAndClient { server, _ in
            let token = "env-token-0123456789abcdef"
            let ui = try await PeerProcess.start(
                TestEnvironment.builtProduct("nex"), ["ui", "-s", server.url, "--host", "::1", "--port", "0"],
                environment: ["NEX_UI_TOKEN": token])
            let listening = try await eventuallyValue("nex ui listens") {
                ui.output.first { $0.hasPrefix("Dashboard on http://") }
            }
            #expect(listening.contains("http://[::1]:") && listening.contains("/?token=\(token)"), "\(listening)")
            let port = try #require(
                listening.split(separator: "]:").last?.split(separator: "/").first.map(String.init))
            let probe = """
                import http.client, sys
                port, token = int(sys.argv[1]), sys.argv[2]
                def ask(host, headers):
                    c = http.client.HTTPConnection("::1", port, timeout=5)
                    c.request("GET", "/api/overview", headers=dict(headers, Host=host))
                    return c.getresponse().status
                print(ask("[::1]:%d" % port, {"Authorization": "Bearer " + token}))
                print(ask("[::1]:%d" % port, {}))
                print(ask("evil.example:%d" % port, {"Authorization": "Bearer " + token}))
                """
            let statuses = try await TestEnvironment.run(python, ["-c", probe, port, token])
            #expect(statuses.split(separator: "\n") == ["200", "401", "403"], "\(statuses)")
            #expect(try await ui.terminate() == 0)
        }
    }

    static var ipv6LoopbackWorks: Bool {
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }
}
