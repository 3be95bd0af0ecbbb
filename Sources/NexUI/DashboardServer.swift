import Foundation
import Hummingbird
public import Logging
public import NATS
import NIOCore
public import NKeys
import NexControlClient
import NexModels
public import ServiceLifecycle

/// `nex ui`: the web dashboard. One page (served from the binary, no other origin) and a small JSON and
/// server-sent-events API over the Nex control API, on the CLI's own NATS connection:
/// - `GET /api/overview`: the nodes (PING, then INFO of each) and the namespace's workloads;
/// - `GET /api/events`: the namespace's events as they happen;
/// - `GET /api/logs?workload=NAME`: one workload's log lines as they happen;
/// - `POST /api/stop {"node","workload_id"}`: stops a workload with the issuer key the CLI would use.
///
/// Every request needs the dashboard's token (``TokenAuthMiddleware``), and on a loopback or named address
/// one of this machine's names as `Host` (``HostCheckMiddleware``).
public struct DashboardServer: Service {
    /// `nex ui --port`'s default.
    public static let defaultPort = 3030

    let api: DashboardAPI
    let host: String
    let port: Int
    /// What a request must carry (from the URL, as a cookie, or as a bearer token).
    public let token: String
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// A dashboard of `namespace` through `client`, on `host:port` (port 0: any free one, told to
    /// `onListening`). `issuer` signs stops; without one the page's stop answers why not. `token` is what
    /// every request must carry (see ``makeToken()`` and ``url(host:port:token:)``).
    public init(
        client: NATSClient, serverURL: String, namespace: String, issuer: NKeyPair?, host: String = "127.0.0.1",
        port: Int = DashboardServer.defaultPort, token: String, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.api = DashboardAPI(client: client, serverURL: serverURL, namespace: namespace, issuer: issuer)
        self.token = token
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    /// Why `token` cannot be a dashboard token (nil: it can): it travels in a URL and a cookie.
    public static func tokenProblem(_ token: String) -> String? {
        if token.count < 16 { return "a dashboard token needs at least 16 characters" }
        let allowed = token.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9")
                || "-_.~".unicodeScalars.contains(c)
        }
        return allowed ? nil : "a dashboard token may hold only letters, digits, '-', '_', '.' and '~'"
    }

    /// A new random token: 32 bytes from the system's generator, as 64 hex digits.
    public static func makeToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// The address to open, with the token the page trades for its cookie.
    public static func url(host: String, port: Int, token: String) -> String {
        let shown = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return "http://\(shown):\(port)/?token=\(token)"
    }

    public func run() async throws {
        if let problem = Self.tokenProblem(token) { throw DashboardError(description: problem) }
        let router = Router()
        if let check = HostCheckMiddleware<BasicRequestContext>(listeningOn: host) {
            router.add(middleware: check)
        } else {
            logger.warning(
                "the dashboard listens on every address: anyone who reaches this port with the token can see the workloads and stop them with your issuer key",
                metadata: ["host": "\(host)"])
        }
        router.add(middleware: TokenAuthMiddleware<BasicRequestContext>(token: token))
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.index_html)))
        }
        router.get("/api/overview") { [api] _, _ in
            do { return Self.json(try await api.overview()) } catch {
                return Self.json(
                    StopAnswer(ok: false, error: "cannot ask the nodes through NATS: \(error)"), .badGateway)
            }
        }
        router.get("/api/events") { [api] _, _ in
            Self.eventStream(api.events(), client: api.client)
        }
        router.get("/api/logs") { [api] request, _ in
            // One subject token: a dot or wildcard would widen the subscription.
            guard let workload = request.uri.queryParameters.get("workload"), !workload.isEmpty,
                !workload.contains(where: { ".*> \t\r\n".contains($0) })
            else {
                return Self.json(
                    StopAnswer(ok: false, error: "name the workload: /api/logs?workload=NAME"), .badRequest)
            }
            return Self.eventStream(api.logs(workload: workload), client: api.client)
        }
        router.post("/api/stop") { [api] request, context in
            if let refusal = Self.crossSiteRefusal(request) { return Self.json(refusal, .forbidden) }
            let stop: StopRequest
            do { stop = try await request.decode(as: StopRequest.self, context: context) } catch {
                return Self.json(
                    StopAnswer(ok: false, error: "send JSON {\"node\": \"N…\", \"workload_id\": \"…\"}"), .badRequest)
            }
            let answer = await api.stop(stop)
            return Self.json(answer, answer.ok ? .ok : .unprocessableContent)
        }
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "nex-ui"),
            onServerRunning: { [host, port, logger, onListening] channel in
                let bound = channel.localAddress?.port ?? port
                // The token stays out of the log: logs are read by more people than the terminal.
                logger.info(
                    "dashboard", metadata: ["url": "\(Self.url(host: host, port: bound, token: "").dropLast(7))"])
                await onListening(bound)
            },
            logger: logger)
        do { try await app.run() } catch {
            // Cancelled: asked to stop, not a failure.
            if Task.isCancelled { return }
            let taken = (error as? IOError)?.errnoCode == EADDRINUSE
            throw DashboardError(
                description: taken
                    ? "cannot serve the dashboard on \(host):\(port): the port is taken; choose another --port"
                    : "cannot serve the dashboard on \(host):\(port): \(error)")
        }
    }

    /// A page on another site may not stop workloads through this one (the browser sends its `Origin`), and
    /// only JSON is taken, which a plain cross-site form cannot send.
    static func crossSiteRefusal(_ request: Request) -> StopAnswer? {
        guard request.headers[.contentType]?.hasPrefix("application/json") == true else {
            return StopAnswer(ok: false, error: "send the stop as application/json")
        }
        if let origin = request.headers[.origin], let host = request.head.authority,
            origin != "http://\(host)"
        {
            return StopAnswer(ok: false, error: "stops are taken only from the dashboard's own page")
        }
        return nil
    }

    static func json(_ value: some Encodable, _ status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        // Cannot happen for these types; if it did, the page still gets a JSON error.
        let body = (try? encoder.encode(value)) ?? Data(#"{"ok":false,"error":"cannot encode"}"#.utf8)
        return Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// A `text/event-stream` of `feed`: one `data:` event per message it renders, and a comment every 15 s
    /// so that a closed page is noticed (the write fails) even when nothing happens. It ends when the page
    /// goes, or at graceful shutdown.
    static func eventStream(_ feed: DashboardAPI.Feed, client: NATSClient) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
            body: ResponseBody { writer in
                try await client.withSubscription(to: feed.subject) { subscription in
                    let (lines, sink) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1024))
                    try await withThrowingDiscardingTaskGroup { group in
                        group.addTask {
                            for try await message in subscription {
                                if let line = feed.render(message) { sink.yield("data: \(line)\n\n") }
                            }
                            sink.finish()
                        }
                        group.addTask {
                            while true {
                                try await Task.sleep(for: .seconds(15))
                                sink.yield(": keepalive\n\n")
                            }
                        }
                        group.addTask {
                            do { try await gracefulShutdown() } catch { return }  // cancelled: the page went
                            sink.finish()
                        }
                        for await line in lines { try await writer.write(ByteBuffer(string: line)) }
                        group.cancelAll()
                    }
                }
                try await writer.finish(nil)
            })
    }
}

/// Why the dashboard could not run.
public struct DashboardError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
