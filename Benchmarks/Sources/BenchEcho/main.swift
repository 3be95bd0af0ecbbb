// A minimal echo service for the deploy benchmark (release-built, answers svc.echo via NATS_URL).
import Foundation
import NATS

let url = ProcessInfo.processInfo.environment["NATS_URL"] ?? "nats://127.0.0.1:4222"
let client = NATSClient(configuration: .init(servers: [url]))
try await client.connect()
try await client.subscribe(to: "svc.echo", queue: "echo") { m in
    if let reply = m.replyTo { try await client.publish(m.bytes, to: reply) }
}
try await client.flush()
while true { try await Task.sleep(for: .seconds(3600)) }
