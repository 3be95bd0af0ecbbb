import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The `http` host service: `get/head/del(url, options?)` and `post/put/patch(url, body, options?)`, where
/// `options.headers` is an object of strings. Answers `{status, headers, body}` (body as UTF-8 text).
struct HTTPHostService: Sendable {
    let timeout: Duration

    func call(method: String, args: [Any]) async throws -> Any {
        let verbs = [
            "get": "GET", "head": "HEAD", "del": "DELETE", "delete": "DELETE", "post": "POST", "put": "PUT",
            "patch": "PATCH",
        ]
        guard let verb = verbs[method] else { throw HostCallError("no such http method \(method)") }
        let text = try HostServicesBroker.string(args, 0, "url")
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? "") else {
            throw HostCallError("\(text) is not an http(s) URL")
        }
        let hasBody = ["POST", "PUT", "PATCH"].contains(verb)
        var request = URLRequest(url: url)
        request.httpMethod = verb
        request.timeoutInterval = Double(timeout.components.seconds)
        if hasBody { request.httpBody = Data(HostServicesBroker.bytes(args, 1)) }
        let optionsIndex = hasBody ? 2 : 1
        if optionsIndex < args.count, let options = args[optionsIndex] as? [String: Any],
            let headers = options["headers"] as? [String: Any]
        {
            for (key, value) in headers { request.setValue("\(value)", forHTTPHeaderField: key) }
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw HostCallError("not an HTTP response") }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers["\(key)".lowercased()] = "\(value)" }
        return ["status": http.statusCode, "headers": headers, "body": String(decoding: data, as: UTF8.self)]
    }
}
