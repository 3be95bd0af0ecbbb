import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 exchange with a registry, its body streamed to the caller: what the registry client is built on.
///
/// It never resolves a name by itself: the ``Dialer`` it is given says which addresses a host may be reached at, so
/// the node's registry policy and egress policy decide every connection, redirects included.
struct RegistryTransport: Sendable {
    /// The addresses `host` may be reached at on `port`, in order; throws (an ``OCIError/refused(_:_:)``) when
    /// none may.
    typealias Dialer = @Sendable (_ host: String, _ port: Int) async throws -> [SocketAddress]

    struct Request: Sendable {
        var method: HTTPMethod = .GET
        var url: URL
        var headers: [(String, String)] = []
    }

    struct Head: Sendable {
        var status: Int
        /// Names in lower case; repeated fields joined with ", ".
        var headers: [String: String]
    }

    let dialer: Dialer
    /// Trust for https: nil is the system's roots.
    let tls: TLSConfiguration?
    var connectTimeout: TimeAmount = .seconds(5)

    /// How long a response may go without a byte before it is given up.
    var idleTimeout: Duration = .seconds(30)

    /// Sends `request`; `body` gets the response body piece by piece, once the head has been handed to `head`
    /// (which may throw to refuse it).
    func exchange(
        _ request: Request, head onHead: (Head) throws -> Void, body onBody: (ByteBuffer) throws -> Void
    ) async throws {
        let target = try Target(request.url)
        let addresses = try await dialer(target.host, target.port)
        var lastError: (any Error)?
        for address in addresses.prefix(4) {
            try Task.checkCancellation()
            let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
            do {
                channel = try await connect(to: address, target: target)
            } catch {
                lastError = error  // the next address, as connecting clients do
                continue
            }
            try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: target.pathAndQuery)
                head.headers.add(name: "host", value: target.hostHeader)
                head.headers.add(name: "user-agent", value: "nex-oci")
                head.headers.add(name: "connection", value: "close")
                for (name, value) in request.headers { head.headers.add(name: name, value: value) }
                try await outbound.write(contentsOf: [.head(head), .end(nil)])
                var sawHead = false
                for try await part in inbound {
                    switch part {
                    case .head(let head):
                        var headers: [String: String] = [:]
                        for (name, value) in head.headers {
                            let key = name.lowercased()
                            headers[key] = headers[key].map { "\($0), \(value)" } ?? value
                        }
                        sawHead = true
                        try onHead(Head(status: Int(head.status.code), headers: headers))
                    case .body(let chunk):
                        try onBody(chunk)
                    case .end:
                        guard sawHead else { break }
                        return
                    }
                }
                throw OCIError.transport(target.host, "the connection closed before the response ended")
            }
            return
        }
        throw OCIError.transport(
            target.host, "cannot connect to port \(target.port): \(lastError.map { "\($0)" } ?? "no address")")
    }

    private func connect(
        to address: SocketAddress, target: Target
    ) async throws -> NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart> {
        let context = target.secure ? try Self.sslContext(tls) : nil
        let serverName = target.isIPLiteral ? nil : target.host
        let idle = TimeAmount.nanoseconds(Int64(idleTimeout.components.seconds) * 1_000_000_000)
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(connectTimeout)
            .connect(to: address) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idle))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdle())
                    return try NIOAsyncChannel(wrappingChannelSynchronously: channel)
                }
            }
    }

    private static func sslContext(_ configuration: TLSConfiguration?) throws -> NIOSSLContext {
        try NIOSSLContext(configuration: configuration ?? .makeClientConfiguration())
    }

    /// Where a URL points: scheme, host, port and the request target.
    struct Target {
        let secure: Bool
        let host: String
        let port: Int
        let hostHeader: String
        let pathAndQuery: String

        var isIPLiteral: Bool { host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." } }

        init(_ url: URL) throws(OCIError) {
            guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                let host = url.host, !host.isEmpty
            else { throw OCIError.transport(url.absoluteString, "not an http(s) URL") }
            secure = scheme == "https"
            self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
            port = url.port ?? (secure ? 443 : 80)
            guard (1...65535).contains(port) else { throw OCIError.transport(url.absoluteString, "a port past 65535") }
            let shownHost = self.host.contains(":") ? "[\(self.host)]" : self.host
            hostHeader = url.port == nil ? shownHost : "\(shownHost):\(port)"
            let components = URLComponents(url: url, resolvingAgainstBaseURL: true)
            let path = components?.percentEncodedPath ?? ""
            pathAndQuery = (path.isEmpty ? "/" : path) + (components?.percentEncodedQuery.map { "?" + $0 } ?? "")
        }
    }
}

/// Closes a connection that has been silent past its read timeout: a stalled registry fails the pull instead of
/// hanging it.
private final class CloseOnIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.fireErrorCaught(OCIError.transport("the registry", "no data for the read timeout"))
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
