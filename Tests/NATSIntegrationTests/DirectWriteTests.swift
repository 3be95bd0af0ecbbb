import NATSTestSupport
import Synchronization
import Testing

@testable import NATS

/// A lone request is written from the caller's thread to a duplicate of the socket; everything else goes
/// through the event loop. These check that both paths share one ordered byte stream.
@Suite(.timeLimit(.minutes(1))) struct DirectWriteTests {
    @Test func sequentialRequestsAreWrittenByTheCallerAndStayOrderedWithPublishes() async throws {
        try await withServerAndClient { server, client in
            #expect(client.state.withLock { $0.directWriter } != nil)
            // The responder has a connection of its own: the requester's carries only its requests.
            try await withClient([server.url]) { responder in
                try await responder.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: responder) }
                try await responder.flush()
                for i in 0..<20 {
                    #expect(try await client.request("r\(i)", to: "svc.echo").string == "r\(i)")
                    // An idle connection is what a lone request finds (a stream within 50 µs is batched).
                    try await Task.sleep(for: .milliseconds(1))
                }
                // All but the first, which queued behind the inbox's SUB, were written by the caller.
                #expect(client.state.withLock { $0.directWrites } >= 18)
            }
            try await client.subscribe(to: "svc.echo") { m in try await m.respond(m.bytes, using: client) }
            try await client.flush()

            // A numbered stream published by one task while another requests: a request written past the
            // loop must neither split a frame (the server would close the connection) nor reorder the stream.
            try await withClient([server.url]) { watcher in
                let stream = try await watcher.subscribe(to: "stream")
                try await watcher.flush()
                let count = 5_000
                async let published: Void = {
                    for i in 0..<count { try await client.publish("\(i)", to: "stream") }
                    try await client.flush()
                }()
                var answered = 0
                for i in 0..<200 {
                    if try await client.request("q\(i)", to: "svc.echo").string == "q\(i)" { answered += 1 }
                }
                try await published
                let received = try await stream.collect(count).map(\.string)
                #expect(answered == 200)
                #expect(received == (0..<count).map { "\($0)" })
            }
            #expect(client.statistics.reconnects == 0)
        }
    }

    @Test func theDuplicateSocketIsClosedWithTheConnection() async throws {
        try await NATSServer.with { server in
            let client = NATSClient(configuration: testConfig([server.url]))
            try await client.connect()
            #expect(client.state.withLock { $0.directWriter } != nil)
            await client.close()
            #expect(client.state.withLock { $0.directWriter } == nil)
        }
    }
}
