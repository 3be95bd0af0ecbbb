import Hummingbird

/// Answers only requests addressed to this machine's names for the dashboard (`127.0.0.1`, `localhost`,
/// `[::1]`, or the `--host` it was given). A page on another site that re-resolves its own name to
/// 127.0.0.1 (DNS rebinding) sends its own name as `Host`, and is refused before it can read or stop anything.
struct HostCheckMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedHosts: Set<String>

    /// Nil when `host` listens on every address: the operator chose to expose it, and any name may reach it.
    init?(listeningOn host: String) {
        guard !["0.0.0.0", "::", "[::]"].contains(host) else { return nil }
        // A `Host` header writes an IPv6 address in brackets.
        let own = host.lowercased()
        let bracketed = own.contains(":") && !own.hasPrefix("[") ? "[\(own)]" : own
        allowedHosts = ["127.0.0.1", "localhost", "[::1]", bracketed]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let authority = request.head.authority, allowedHosts.contains(Self.hostName(authority)) else {
            return DashboardServer.json(
                StopAnswer(ok: false, error: "this dashboard answers only on this machine's own addresses"),
                .forbidden)
        }
        return try await next(request, context)
    }

    /// `host` of `host:port`, `[v6]` of `[v6]:port`, lowercased.
    static func hostName(_ authority: String) -> String {
        let lowered = authority.lowercased()
        if lowered.hasPrefix("["), let close = lowered.firstIndex(of: "]") {
            return String(lowered[...close])
        }
        return String(lowered.split(separator: ":", maxSplits: 1).first ?? "")
    }
}
