import Foundation
import NATSTestSupport
import Testing

@testable import NexNode

/// The HTTP host service's client against a real server on 127.0.0.1. Every refused destination is loopback too
/// (127.0.0.1 itself, 127.0.0.2, ::1), and a refusal happens before any connection: no packet leaves the host.
@Suite struct HTTPEgressTests {
    private func withEchoServer(_ body: (Int) async throws -> Void) async throws {
        let python = try #require(TestEnvironment.python, "run scripts/setup.sh")
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/http_echo.py").path
        let web = try await PeerProcess.start(python, [script])
        defer { web.signal(SIGKILL) }
        let line = try #require(try await web.waitForLines(1).first)
        let port = try #require(Int(line))
        try await body(port)
    }

    private func get(_ url: String, _ client: HTTPEgressClient) async throws -> HTTPEgressClient.Response {
        try await client.execute(.init(method: .GET, url: URL(string: url)!))
    }

    private func refusal(_ url: String, _ client: HTTPEgressClient) async -> EgressRefusal? {
        do {
            _ = try await get(url, client)
            return nil
        } catch {
            guard let refusal = error as? EgressRefusal else {
                Issue.record("not a refusal: \(error)")
                return nil
            }
            return refusal
        }
    }

    @Test func aLiteralLoopbackAddressIsRefusedUnlessAllowed() async throws {
        try await withEchoServer { port in
            let refused = await refusal("http://127.0.0.1:\(port)/x", HTTPEgressClient(policy: .globalOnly))
            #expect(refused?.scope == .loopback, "a server listens there, yet nothing may connect")
            #expect(refused?.description.contains("127.0.0.1/32 or 127.0.0.1:\(port)") == true)
            #expect(await refusal("http://[::1]:\(port)/", HTTPEgressClient(policy: .globalOnly))?.scope == .loopback)

            let allowed = HTTPEgressClient(policy: try EgressPolicy(allowList: "127.0.0.1:\(port)"))
            let answer = try await get("http://127.0.0.1:\(port)/x?y=1", allowed)
            #expect(answer.status == 200 && String(decoding: answer.body, as: UTF8.self).contains(#""path": "/x?y=1""#))
            #expect(await refusal("http://127.0.0.2:\(port)/", allowed)?.address == IPAddress("127.0.0.2"))
        }
    }

    /// The check follows resolution: a name is refused for the address it resolves to.
    @Test func aNameThatResolvesToLoopbackIsRefused() async throws {
        let hosts = try String(contentsOfFile: "/etc/hosts", encoding: .utf8)
        try #require(hosts.contains("localhost"), "/etc/hosts names localhost, so resolving it sends no DNS query")
        try await withEchoServer { port in
            let refused = await refusal("http://localhost:\(port)/", HTTPEgressClient(policy: .globalOnly))
            #expect(refused?.description.contains("localhost (127.0.0.1)") == true, "\(String(describing: refused))")
            let byName = HTTPEgressClient(policy: try EgressPolicy(allowList: "localhost:\(port)"))
            #expect(try await get("http://localhost:\(port)/", byName).status == 200)

            // A name whose DNS answer points inside is refused although the URL looks harmless.
            var rebinding = HTTPEgressClient(policy: .globalOnly)
            rebinding.resolver = { _, _ in [IPAddress("127.0.0.1")!] }
            #expect(await refusal("http://example.com:\(port)/", rebinding)?.scope == .loopback)
        }
    }

    /// Found in review: Foundation accepts any digits as a port, and a socket address traps past 65535.
    @Test func aPortOutOfRangeIsAnErrorNotACrash() async throws {
        for url in ["http://127.0.0.1:70000/", "http://[::1]:65536/"] {
            do {
                _ = try await get(url, HTTPEgressClient(policy: .globalOnly))
                Issue.record("\(url) was fetched")
            } catch {
                #expect("\(error)".contains("port outside 1–65535"), "\(error)")
            }
        }
    }

    @Test func aRedirectToARefusedAddressIsRefused() async throws {
        try await withEchoServer { port in
            let allowed = HTTPEgressClient(policy: try EgressPolicy(allowList: "127.0.0.1:\(port)"))
            let followed = try await get("http://127.0.0.1:\(port)/redirect?to=/landed", allowed)
            #expect(followed.status == 200 && String(decoding: followed.body, as: UTF8.self).contains("/landed"))

            let outside = "http://127.0.0.2:\(port)/secret"
            let refused = await refusal("http://127.0.0.1:\(port)/redirect?to=\(outside)", allowed)
            #expect(refused?.address == IPAddress("127.0.0.2") && refused?.scope == .loopback)
            let toIPv6 = await refusal("http://127.0.0.1:\(port)/redirect?to=http://%5B::1%5D:\(port)/", allowed)
            #expect(toIPv6?.address == IPAddress("::1"), "\(String(describing: toIPv6))")

            do {
                _ = try await get(
                    "http://127.0.0.1:\(port)/redirect?to=/redirect?to=/redirect?to=/x",
                    {
                        var client = allowed
                        client.maxRedirects = 1
                        return client
                    }())
                Issue.record("a chain longer than the limit was followed")
            } catch {
                #expect("\(error)".contains("more than 1 redirects"), "\(error)")
            }
        }
    }
}
