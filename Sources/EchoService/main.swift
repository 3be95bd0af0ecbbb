// The example Nex service: a NATS micro service named "echo" that answers requests on svc.echo with
// their payload. It reads NATS_URL (set by the node when it runs the service) and stops on SIGTERM/SIGINT.
import Foundation
import NATS
import NATSServices

#if canImport(Glibc)
    import Glibc
#endif

let url = ProcessInfo.processInfo.environment["NATS_URL"] ?? "nats://127.0.0.1:4222"
var config = NATSClient.Configuration(servers: [url])
config.name = "echoservice"
let client = NATSClient(configuration: config)
do {
    try await client.connect()
} catch {
    FileHandle.standardError.write(Data("echoservice: cannot connect to \(url): \(error)\n".utf8))
    exit(1)
}

let service = try await NATSService.start(
    client: client, config: .init(name: "echo", version: "1.0.0", description: "Echoes requests on svc.echo"))
try await service.addEndpoint(name: "echo", subject: "svc.echo") { request in
    try await request.respond(request.message.payload)
}
print("echoservice: answering on svc.echo (service \(service.id)) via \(url)")
fflush(nil)

// Run until asked to stop.
let stop = AsyncStream<Void> { continuation in
    let sources = [SIGTERM, SIGINT].map { sig -> any DispatchSourceSignal in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig)
        source.setEventHandler { continuation.yield() }
        source.resume()
        return source
    }
    nonisolated(unsafe) let keep = sources
    continuation.onTermination = { _ in
        for source in keep { source.cancel() }
    }
}
for await _ in stop { break }
await service.stop()
try? await client.drain()  // exiting: nothing is left to do on failure
