import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// The HTTP/1.1 client the `http` host service calls through, built so that the egress policy holds.
///
/// It resolves names itself, checks every address against the policy, and connects to the address it checked
/// (a name cannot resolve to a public address for the check and to a private one for the connection). Redirects
/// are followed here, up to five, and each hop is checked the same way. No proxy from the environment is used.
struct HTTPEgressClient: Sendable {
    /// Resolves a host to the addresses to try, in order.
    typealias Resolver = @Sendable (_ host: String, _ port: Int) async throws -> [IPAddress]

    struct Request: Sendable {
        var method: HTTPMethod
        var url: URL
        var headers: [(String, String)] = []
        var body: [UInt8]?
    }

    struct Response: Sendable {
        var status: Int
        /// Names in lower case; repeated fields joined with ", ".
        var headers: [String: String]
        var body: [UInt8]
    }

    let policy: EgressPolicy
    var resolver: Resolver = HTTPEgressClient.systemResolver
    var maxRedirects = 5
    var maxBodyBytes = 8 << 20
    var connectTimeout: TimeAmount = .seconds(3)
    /// Trust for https: nil is the system's roots; tests supply their own.
    var tlsConfiguration: TLSConfiguration?

    init(policy: EgressPolicy) { self.policy = policy }

    func execute(_ request: Request) async throws -> Response {
        var request = request
        var visited = 0
        while true {
            let response = try await executeOnce(request)
            guard [301, 302, 303, 307, 308].contains(response.status), let location = response.headers["location"]
            else { return response }
            visited += 1
            guard visited <= maxRedirects else {
                throw HTTPEgressError.tooManyRedirects(maxRedirects, last: request.url.absoluteString)
            }
            guard let next = URL(string: location, relativeTo: request.url)?.absoluteURL else {
                throw HTTPEgressError.badRedirect(location)
            }
            if !Self.sameOrigin(next, request.url) {
                request.headers.removeAll {
                    ["authorization", "cookie", "proxy-authorization"].contains($0.0.lowercased())
                }
            }
            // 303 (except after HEAD), and 301/302 after a POST, become a GET without a body (as the Fetch
            // standard says); other methods keep their method and body.
            if (response.status == 303 && request.method != .HEAD)
                || ([301, 302].contains(response.status) && request.method == .POST)
            {
                request.method = .GET
                request.body = nil
            }
            request.url = next
        }
    }

    private func executeOnce(_ request: Request) async throws -> Response {
        let target = try Target(request.url)
        let addresses = try await resolver(target.host, target.port)
        guard !addresses.isEmpty else { throw HTTPEgressError.unresolved(target.host) }
        var firstRefusal: EgressRefusal?
        var lastError: (any Error)?
        // A few addresses at most: each costs up to the connect timeout, and the call has a deadline.
        for address in addresses.prefix(Self.maxAddressesTried) {
            try Task.checkCancellation()
            if let refusal = policy.refusal(host: target.host, port: target.port, address: address) {
                firstRefusal = firstRefusal ?? refusal
                continue
            }
            do {
                return try await exchange(request, target: target, address: address)
            } catch let error as ConnectFailure {
                lastError = error.underlying  // try the next address, as connecting clients do
            }
        }
        if let lastError { throw HTTPEgressError.connectFailed(target.host, target.port, "\(lastError)") }
        throw firstRefusal!
    }

    static let maxAddressesTried = 4

    /// Only a failure to connect moves on to the next address; anything later has reached the server.
    private struct ConnectFailure: Error { let underlying: any Error }

    private func exchange(_ request: Request, target: Target, address: IPAddress) async throws -> Response {
        let socket = try SocketAddress(packedIPAddress: ByteBuffer(bytes: address.bytes), port: target.port)
        let tls = target.secure ? try Self.sslContext(tlsConfiguration) : nil
        let serverName = IPAddress(target.host) == nil ? target.host : nil
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(connectTimeout)
                .connect(to: socket) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            let handler = try NIOSSLClientHandler(context: tls, serverHostname: serverName)
                            try channel.pipeline.syncOperations.addHandler(handler)
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ConnectFailure(underlying: error)
        }
        let maxBodyBytes = self.maxBodyBytes
        return try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: target.pathAndQuery)
            head.headers.add(name: "host", value: target.hostHeader)
            head.headers.add(name: "user-agent", value: "nex-host-services")
            head.headers.add(name: "connection", value: "close")
            for (name, value) in request.headers
            where !["host", "connection", "content-length"].contains(name.lowercased()) {
                head.headers.add(name: name, value: value)
            }
            if let body = request.body { head.headers.add(name: "content-length", value: "\(body.count)") }
            // One write for the whole request: a server may answer as soon as the head is in and close at
            // once (HTTP/1.0 servers do), and a separate write of the end would then fail on a closed channel.
            var parts: [HTTPClientRequestPart] = [.head(head)]
            if let body = request.body, !body.isEmpty { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            parts.append(.end(nil))
            try await outbound.write(contentsOf: parts)

            var response: Response?
            for try await part in inbound {
                switch part {
                case .head(let head):
                    var headers: [String: String] = [:]
                    for (name, value) in head.headers {
                        let key = name.lowercased()
                        headers[key] = headers[key].map { "\($0), \(value)" } ?? value
                    }
                    response = Response(status: Int(head.status.code), headers: headers, body: [])
                case .body(let chunk):
                    guard (response?.body.count ?? 0) + chunk.readableBytes <= maxBodyBytes else {
                        throw HTTPEgressError.bodyTooLarge(maxBodyBytes)
                    }
                    response?.body.append(contentsOf: chunk.readableBytesView)
                case .end:
                    if let response { return response }
                }
            }
            throw HTTPEgressError.incompleteResponse(target.host)
        }
    }

    private static func sameOrigin(_ a: URL, _ b: URL) -> Bool {
        a.scheme?.lowercased() == b.scheme?.lowercased() && a.host?.lowercased() == b.host?.lowercased()
            && a.port == b.port
    }

    /// The context with the system's trust roots, made on first https use (loading the roots is slow).
    private static let systemContext = Mutex<NIOSSLContext?>(nil)

    private static func sslContext(_ configuration: TLSConfiguration?) throws -> NIOSSLContext {
        if let configuration { return try NIOSSLContext(configuration: configuration) }
        return try systemContext.withLock { cached in
            if let cached { return cached }
            let made = try NIOSSLContext(configuration: .makeClientConfiguration())
            cached = made
            return made
        }
    }

    /// Name lookups (getaddrinfo blocks, for as long as a resolver takes): a pool of their own, so functions
    /// that resolve slow names hold up neither file work nor each other beyond its size.
    static let resolverPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 4)
        pool.start()
        return pool
    }()

    /// getaddrinfo on ``resolverPool``, keeping the system's order.
    static let systemResolver: Resolver = { host, port in
        if let literal = IPAddress(host) { return [literal] }
        return try await lookUp {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(host, "\(port)", &hints, &list)
            guard status == 0 else {
                throw HTTPEgressError.unresolvedBecause(host, String(cString: gai_strerror(status)))
            }
            defer { freeaddrinfo(list) }
            var found: [IPAddress] = []
            var entry = list
            while let current = entry?.pointee {
                if let address = current.ai_addr, let ip = Self.ipAddress(address), !found.contains(ip) {
                    found.append(ip)
                }
                entry = current.ai_next
            }
            return found
        }
    }

    /// Runs a lookup on ``resolverPool``; a cancelled caller (a host call past its deadline) returns at once and
    /// the lookup finishes in the background on its pool thread, its answer dropped.
    private static func lookUp(_ work: @escaping @Sendable () throws -> [IPAddress]) async throws -> [IPAddress] {
        let waiter = Mutex<(continuation: CheckedContinuation<[IPAddress], any Error>?, cancelled: Bool)>((nil, false))
        @Sendable func finish(_ result: Result<[IPAddress], any Error>) {
            waiter.withLock { w in
                defer { w.continuation = nil }
                return w.continuation
            }?.resume(with: result)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let cancelled = waiter.withLock { w in
                    if !w.cancelled { w.continuation = continuation }
                    return w.cancelled
                }
                if cancelled { return continuation.resume(throwing: CancellationError()) }
                resolverPool.submit { _ in finish(Result { try work() }) }
            }
        } onCancel: {
            waiter.withLock { $0.cancelled = true }
            finish(.failure(CancellationError()))
        }
    }

    private static func ipAddress(_ address: UnsafeMutablePointer<sockaddr>) -> IPAddress? {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                withUnsafeBytes(of: v4.pointee.sin_addr) { IPAddress(bytes: Array($0)) }
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                withUnsafeBytes(of: v6.pointee.sin6_addr) { IPAddress(bytes: Array($0)) }
            }
        default:
            return nil
        }
    }

    /// Where a URL points: scheme, host, port and the request target.
    struct Target {
        let secure: Bool
        let host: String
        let port: Int
        let hostHeader: String
        let pathAndQuery: String

        init(_ url: URL) throws {
            guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
                throw HTTPEgressError.notHTTP(url.absoluteString)
            }
            guard let host = url.host, !host.isEmpty else { throw HTTPEgressError.notHTTP(url.absoluteString) }
            secure = scheme == "https"
            self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            port = url.port ?? (secure ? 443 : 80)
            // Foundation's URL takes any digits as a port; a socket address traps on one past 65535.
            guard (1...65535).contains(port) else { throw HTTPEgressError.badPort(url.absoluteString) }
            let shownHost = self.host.contains(":") ? "[\(self.host)]" : self.host
            hostHeader = url.port == nil ? shownHost : "\(shownHost):\(port)"
            let components = URLComponents(url: url, resolvingAgainstBaseURL: true)
            let path = components?.percentEncodedPath ?? ""
            pathAndQuery = (path.isEmpty ? "/" : path) + (components?.percentEncodedQuery.map { "?" + $0 } ?? "")
        }
    }
}

/// Why an HTTP host call failed before or while talking to the server.
enum HTTPEgressError: Error, CustomStringConvertible {
    case notHTTP(String)
    case badPort(String)
    case unresolved(String)
    case unresolvedBecause(String, String)
    case connectFailed(String, Int, String)
    case tooManyRedirects(Int, last: String)
    case badRedirect(String)
    case bodyTooLarge(Int)
    case incompleteResponse(String)

    var description: String {
        switch self {
        case .notHTTP(let url): "\(url) is not an http(s) URL"
        case .badPort(let url): "\(url) has a port outside 1–65535"
        case .unresolved(let host): "\(host) resolves to no address"
        case .unresolvedBecause(let host, let reason): "cannot resolve \(host): \(reason)"
        case .connectFailed(let host, let port, let reason): "cannot connect to \(host) port \(port): \(reason)"
        case .tooManyRedirects(let count, let last): "more than \(count) redirects (the last from \(last))"
        case .badRedirect(let location): "the server redirected to \(location), which is not a URL"
        case .bodyTooLarge(let limit): "the response body is larger than \(limit >> 20) MiB"
        case .incompleteResponse(let host): "\(host) closed the connection before the response ended"
        }
    }
}
