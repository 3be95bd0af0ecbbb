import Foundation
import Hummingbird
import NIOCore

/// The dashboard's login, the way Jupyter does it: `nex ui` prints its URL with a token; the page trades
/// `?token=` for an HttpOnly, SameSite=Strict cookie (and drops it from the address bar), and every other
/// request must carry that cookie or `Authorization: Bearer <token>`. Without it the page explains how to get
/// in and `/api/*` answers 401: a local user, another process or a page on another site cannot read the
/// workloads or stop them with the operator's issuer key.
struct TokenAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    /// A cookie per port: two dashboards on one host keep their own.
    static func cookieName(for authority: String?) -> String {
        let port = authority.flatMap { $0.split(separator: ":").last }.flatMap { Int($0) }
        return "nex_ui_\(port ?? 0)"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        let cookie = Self.cookieName(for: request.head.authority)
        if let offered = request.uri.queryParameters.get("token") {
            guard Self.same(offered, token) else { return Self.refusal(for: request, "the token in the URL is wrong") }
            // Trade it for the cookie, and load the page again without the token in its URL (or history).
            return Response(
                status: .seeOther,
                headers: [
                    .location: request.uri.path.isEmpty ? "/" : request.uri.path,
                    .setCookie: "\(cookie)=\(token); Path=/; HttpOnly; SameSite=Strict",
                    .cacheControl: "no-store",
                ])
        }
        if let value = request.cookies[cookie]?.value, Self.same(value, token) {
            return try await next(request, context)
        }
        if let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            Self.same(String(header.dropFirst("Bearer ".count)), token)
        {
            return try await next(request, context)
        }
        return Self.refusal(for: request, "this dashboard needs its token")
    }

    private static func refusal(for request: Request, _ reason: String) -> Response {
        let help =
            "\(reason): open the URL `nex ui` printed (it ends in ?token=…), or send Authorization: Bearer TOKEN "
            + "(the token is --ui-token or NEX_UI_TOKEN when you gave one)"
        if request.uri.path.hasPrefix("/api/") {
            return DashboardServer.json(StopAnswer(ok: false, error: help), .unauthorized)
        }
        let page = "<!doctype html><meta charset=utf-8><title>nex ui</title><p>\(help)</p>"
        return Response(
            status: .unauthorized, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    /// Compares in time that does not depend on where the strings differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}
