import Foundation
import NATS
import NIOHTTP1
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
    func call(method: String, args: [Any], traceParent: String? = nil) async throws -> Any {
        guard let verb = Self.verbs[method] else { throw NexError(.notFound, "no such http method \(method)") }
        let text = try HostServicesBroker.string(args, 0, "url")
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
            url.host?.isEmpty == false
        else {
            throw NexError(.invalidRequest, "\(text) is not an http(s) URL")
        }
        let hasBody = [.POST, .PUT, .PATCH].contains(verb)
        var request = HTTPEgressClient.Request(method: verb, url: url)
        if hasBody { request.body = HostServicesBroker.bytes(args, 1) }
        let optionsIndex = hasBody ? 2 : 1
        if optionsIndex < args.count, let options = args[optionsIndex] as? [String: Any],
            let headers = options["headers"] as? [String: Any]
        {
            request.headers = headers.map { ($0.key, "\($0.value)") }.sorted { $0.0 < $1.0 }
        }
        if let traceParent, !request.headers.contains(where: { $0.0.lowercased() == TraceParent.headerName }) {
            request.headers.append((TraceParent.headerName, traceParent))
        }
        let response = try await client.execute(request)
        return [
            "status": response.status, "headers": response.headers,
            "body": String(decoding: response.body, as: UTF8.self),
        ]
    }
}
