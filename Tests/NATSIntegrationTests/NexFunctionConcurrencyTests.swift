import Foundation
import NATS
import NATSTestSupport
import NexModels
import Testing

@testable import NexNode

/// `max_concurrency` and the trigger queue, through real agents. Each function waits in a host call
/// (`messaging.request`) on a responder the test controls, so which triggers run at once is seen, not timed.
extension NexWorkloadTests {
    /// A function that asks `subject` and answers with the reply.
    func waitingFunction(asking subject: String, in server: NATSServer, type: String = "v8") throws -> String {
        let path = server.directory.appendingPathComponent("wait-\(UUID().uuidString).js").path
        try "(s, p) => this.hostServices.messaging.request('\(subject)', p)".write(
            toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func triggersRunAtOnceUpToMaxConcurrencyEachInItsOwnInstance() async throws {
        try await withNode({ $0.workloadTypes = [.v8] }) { h in
            let barrier = try await h.client.subscribe(to: "conc.barrier")
            try await h.client.flush()
            let file = try waitingFunction(asking: "conc.barrier", in: h.server)
            _ = try await h.deploy(file: file, name: "pair", type: "v8", triggers: ["conc.run"], maxConcurrency: 2)
            async let first = h.client.request("a", to: "conc.run", timeout: .seconds(10))
            async let second = h.client.request("b", to: "conc.run", timeout: .seconds(10))
            // Both triggers are inside the function at the same time: only then are they answered. One at a
            // time, the second would never arrive while the first waits (its host call gives up after 5 s).
            var held: [NATSMessage] = []
            for _ in 0..<2 {
                do {
                    guard let m = try await barrier.nextMessage(timeout: .seconds(4)) else { break }
                    held.append(m)
                } catch {
                    Issue.record("only \(held.count) trigger(s) ran at once; max_concurrency is 2 (\(error))")
                    break
                }
            }
            for m in held { try await h.client.publish("ok:" + m.string, to: m.replyTo ?? "") }
            let answers = Set([try await first.string, try await second.string])
            #expect(answers == ["ok:a", "ok:b"])
        }
    }

    @Test func triggersPastTheQueueAreRefusedAtOnceAsOverloaded() async throws {
        try await withNode({
            $0.workloadTypes = [.v8]
            $0.functionLimits.queueDepth = 1
        }) { h in
            let hold = try await h.client.subscribe(to: "conc.hold")
            try await h.client.flush()
            let file = try waitingFunction(asking: "conc.hold", in: h.server)
            _ = try await h.deploy(file: file, name: "single", type: "v8", triggers: ["conc.one"], maxConcurrency: 1)
            // Replies to the first two come to one inbox; publishing them here keeps their order on the wire.
            let replies = try await h.client.subscribe(to: "conc.replies")
            try await h.client.publish("1", to: "conc.one", replyTo: "conc.replies")
            let first = try #require(try await hold.nextMessage(timeout: .seconds(5)))
            // The first runs and waits; the second takes the only place in the queue; the third finds none. The
            // node sees them in the order sent, on one connection.
            try await h.client.publish("2", to: "conc.one", replyTo: "conc.replies")
            let refusedAt = ContinuousClock.now
            let refused = try await h.client.request("3", to: "conc.one", timeout: .seconds(10))
            #expect(ContinuousClock.now - refusedAt < .seconds(5), "the refusal must not wait for a timeout")
            #expect(refused.headers?["Nats-Service-Error-Code"] == "503")
            #expect(refused.headers?["Nats-Service-Error"]?.contains("overloaded") == true, "\(refused.string)")
            #expect(refused.string.contains("1 triggers running and 1 waiting"), "\(refused.string)")
            // The ones let in are answered once the function can go on.
            try await h.client.publish("r" + first.string, to: first.replyTo ?? "")
            let second = try #require(try await hold.nextMessage(timeout: .seconds(5)))
            try await h.client.publish("r" + second.string, to: second.replyTo ?? "")
            #expect(try await replies.nextMessage(timeout: .seconds(5))?.string == "r1")
            #expect(try await replies.nextMessage(timeout: .seconds(5))?.string == "r2")
            try await eventually("the refusal is a function_exec_failed event") {
                h.events.messages.contains {
                    $0.subject == "$NEX.events.default.function_exec_failed"
                        && String(decoding: $0.payload, as: UTF8.self).contains("overloaded")
                }
            }
        }
    }

    @Test func maxConcurrencyIsCheckedAtDeploy() async throws {
        try await withNode({ $0.workloadTypes = [.native, .v8] }) { h in
            let file = try waitingFunction(asking: "conc.none", in: h.server)
            await #expect(throws: NexError.self) {
                _ = try await h.deploy(file: file, name: "zero", type: "v8", triggers: ["conc.zero"], maxConcurrency: 0)
            }
            do {
                _ = try await h.deploy(
                    file: Self.echoService, name: "svc", type: "native", maxConcurrency: 2)
                Issue.record("a service deployed with max_concurrency")
            } catch let error as NexError {
                #expect(error.message.contains("applies to functions"), "\(error.message)")
            }
        }
    }
}
