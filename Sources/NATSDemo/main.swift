// The project's main job for now: a pub/sub and request/reply tour of the client against a real server —
// the one in NATS_URL, or an embedded nats-server started for the demo.
import Foundation
import Logging
import NATS
import NATSTestSupport

LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }

var embedded: NATSServer?
var servers: [String] = []
if let url = ProcessInfo.processInfo.environment["NATS_URL"], !url.isEmpty {
    servers = [url]
    print("Using the NATS server at \(url)")
} else {
    let server = try await NATSServer.start(.init(jetStream: true))
    embedded = server
    servers = [server.url]
    print("Started an embedded nats-server at \(server.url) (set NATS_URL to use your own)")
}
defer { embedded?.stop() }

var config = NATSClient.Configuration(servers: servers)
config.name = "nats-demo"
let client = NATSClient(configuration: config, logger: Logger(label: "nats-demo"))
try await client.connect()
print("Connected to \(client.connectedServer ?? "?") (server \(client.serverInfo?.version ?? "?"))")

// Pub/sub with a wildcard subscription.
let greetings = try await client.subscribe(to: "demo.greet.*")
for name in ["ada", "grace", "linus"] {
    try await client.publish("hello \(name)", to: "demo.greet.\(name)")
}
var received = 0
for try await message in greetings {
    print("  sub  \(message.subject): \(message.string)")
    received += 1
    if received == 3 { break }
}
try await greetings.unsubscribe()

// Request/reply with a service in a queue group, and headers.
try await client.subscribe(to: "demo.upper", queue: "workers") { request in
    var headers = NATSHeaders()
    headers["Served-By"] = "demo-worker"
    try await request.respond(Array(request.string.uppercased().utf8), headers: headers, using: client)
}
try await client.flush()
let reply = try await client.request("make me loud", to: "demo.upper", timeout: .seconds(2))
print("  req  demo.upper -> \(reply.string) (Served-By: \(reply.headers?["Served-By"] ?? "-"))")

do {
    _ = try await client.request("anyone?", to: "demo.nobody", timeout: .seconds(2))
} catch let error as NATSError where error.code == .noResponders {
    print("  req  demo.nobody -> no responders, as expected")
}

try await client.drain()
print("Drained and closed. Demo complete.")
