import NATS
import NATSJetStream

// Publish-subscribe, request-reply and a key-value round trip through the server named on the command line.
let url = CommandLine.arguments.dropFirst().first ?? "nats://127.0.0.1:4222"
let client = NATSClient(configuration: NATSClient.Configuration(servers: [url]))
try await client.connect()

let echo = try await client.subscribe(to: "consumer.echo") { request in
    try await request.respond(request.payload, using: client)
}
let reply = try await client.request("ping", to: "consumer.echo", timeout: .seconds(5))
guard reply.string == "ping" else { fatalError("request-reply answered \(reply.string), not ping") }
try await echo.unsubscribe()

let bucket = try await JetStreamContext(client: client).createKeyValue(KeyValueConfig(bucket: "consumer"))
_ = try await bucket.put("greeting", "hello")
guard let entry = try await bucket.get("greeting"), entry.string == "hello" else {
    fatalError("the key-value bucket did not return what was put")
}
try await client.drain()
print("ok: request-reply and key-value through \(url) with NATS and NATSJetStream alone")
