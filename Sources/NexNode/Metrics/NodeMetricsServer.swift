import Foundation
import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle

/// Serves a node's metrics as Prometheus text on `GET /metrics` (`nex node up --metrics`, or `otel_metrics`
/// in the configuration). A service: run it in the node's group, and graceful shutdown stops it.
public struct NodeMetricsServer: Service {
    /// Where Nex 0.x serves metrics: `--metrics_port`, `otel_metrics_port`.
    public static let defaultPort = 8085

    let node: NexNode
    let host: String
    let port: Int
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    /// A server for `node` on `host:port`; `onListening` learns the port once it listens (port 0: any free one).
    public init(
        node: NexNode, host: String = "127.0.0.1", port: Int = NodeMetricsServer.defaultPort, logger: Logger,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.node = node
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let router = Router()
        router.get("/metrics") { [node] _, _ -> Response in
            let body = node.metrics.render(await node.metricsSnapshot())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "nex-node"),
            onServerRunning: { [host, port, logger, onListening] channel in
                let bound = channel.localAddress?.port ?? port
                logger.info("serving metrics", metadata: ["url": "http://\(host):\(bound)/metrics"])
                await onListening(bound)
            },
            logger: logger)
        do { try await app.run() } catch {
            // Cancelled: asked to stop, not a failure.
            if Task.isCancelled { return }
            let taken = (error as? IOError)?.errnoCode == EADDRINUSE
            throw NodeMetricsServerError(
                description: taken
                    ? "cannot serve metrics on \(host):\(port): the port is taken; choose another --metrics_port "
                        + "(otel_metrics_port), or 0 for any free port"
                    : "cannot serve metrics on \(host):\(port): \(error)")
        }
    }
}

/// Why the metrics server could not run.
public struct NodeMetricsServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
