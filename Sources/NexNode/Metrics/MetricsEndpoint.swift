import Hummingbird
import Logging
import NIOCore

/// `GET /metrics`: the node's metrics as Prometheus text, from a Hummingbird application that runs as a service
/// in the node's group (graceful shutdown stops it with the node).
enum MetricsEndpoint {
    /// The application serving `metrics` on `host:port` (port 0: any free port, reported to `onRunning`).
    static func application(
        host: String, port: Int, metrics: NodeMetrics,
        snapshot: @escaping @Sendable () async -> NodeMetricsSnapshot, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            let body = metrics.render(await snapshot())
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "nex-node"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
