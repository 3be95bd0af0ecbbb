import Foundation
import NATS
import NIOHTTP1
import NKeys
import NexModels

/// The `http` host service: `get/head/del(url, options?)` and `post/put/patch(url, body, options?)`, where
/// `options.headers` is an object of strings. Answers `{status, headers, body}` (body as UTF-8 text).
/// Every call goes through the node's egress policy (see ``EgressPolicy``).
struct HTTPHostService: Sendable {
    let client: HTTPEgressClient

    private static let verbs: [String: HTTPMethod] = [
        "get": .GET, "head": .HEAD, "del": .DELETE, "delete": .DELETE, "post": .POST, "put": .PUT, "patch": .PATCH,
    ]

    /// `traceParent`: the host-service span's, sent as `traceparent` unless the function set that header.
    func call(method: String, args: HostCallArguments, traceParent: String? = nil) async throws -> HostCallResult {
        guard let verb = Self.verbs[method] else { throw NexError(.notFound, "no such http method \(method)") }
        let text = try args.string(0, "url")
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
            url.host?.isEmpty == false
        else {
            throw NexError(.invalidRequest, "\(text) is not an http(s) URL")
        }
        let hasBody = [.POST, .PUT, .PATCH].contains(verb)
        var request = HTTPEgressClient.Request(method: verb, url: url)
        if hasBody { request.body = try args.bytes(1) }
        if case .object(let headers)? = args[hasBody ? 2 : 1]?["headers"] {
            // A value that is not a string is sent as its JSON text.
            request.headers = headers.map { pair in (pair.0, pair.1.stringValue ?? pair.1.compactJSON) }
                .sorted { $0.0 < $1.0 }
        }
        if let traceParent, !request.headers.contains(where: { $0.0.lowercased() == TraceParent.headerName }) {
            request.headers.append((TraceParent.headerName, traceParent))
        }
        let response = try await client.execute(request)
        return .http(
            .init(
                status: response.status, headers: response.headers, body: String(decoding: response.body, as: UTF8.self)
            ))
    }
}
