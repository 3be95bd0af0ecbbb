import Hummingbird
import Testing

@testable import NexUI

/// The dashboard's checks that need no server: which `Host` names it answers, and how tokens compare.
@Suite struct DashboardAuthTests {
    /// A client writes an IPv6 address in brackets in `Host`: a dashboard bound to one must accept that form
    /// (it refused its own address before).
    @Test func anIPv6BindAcceptsItsBracketedName() throws {
        let check = try #require(HostCheckMiddleware<BasicRequestContext>(listeningOn: "fd00::5"))
        #expect(check.allowedHosts.contains("[fd00::5]"))
        #expect(HostCheckMiddleware<BasicRequestContext>.hostName("[FD00::5]:3030") == "[fd00::5]")
        #expect(!check.allowedHosts.contains("fd00::5"))
        #expect(HostCheckMiddleware<BasicRequestContext>(listeningOn: "::") == nil)
        let named = try #require(HostCheckMiddleware<BasicRequestContext>(listeningOn: "Box.Local"))
        #expect(named.allowedHosts.contains("box.local") && named.allowedHosts.contains("127.0.0.1"))
    }

    @Test func tokensCompareWholeAndCookiesArePerPort() {
        typealias Auth = TokenAuthMiddleware<BasicRequestContext>
        #expect(Auth.same("abc", "abc") && !Auth.same("abc", "abd") && !Auth.same("abc", "abcd"))
        #expect(Auth.cookieName(for: "127.0.0.1:3030") == "nex_ui_3030")
        #expect(Auth.cookieName(for: "[::1]:4040") == "nex_ui_4040")
        #expect(DashboardServer.tokenProblem("short") != nil)
        #expect(DashboardServer.tokenProblem("has;semicolon-and-more") != nil)
        #expect(DashboardServer.tokenProblem(DashboardServer.makeToken()) == nil)
        #expect(DashboardServer.url(host: "fd00::5", port: 1, token: "t") == "http://[fd00::5]:1/?token=t")
    }
}
