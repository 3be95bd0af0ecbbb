import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Synchronization
import Testing

extension HeavyTests {
    /// A node killed mid-stream, through the real `nex` binary: nothing it held is lost.
    @Suite(.timeLimit(.minutes(5))) struct NexTriggerRestartTests {
        let nex = TestEnvironment.builtProduct("nex")

        /// A node running a stream trigger is SIGKILLed (its process group, agents and all) while messages are
        /// in flight, and started again: it re-adopts its workload and the trigger's consumer, and every message
        /// is done at least once. What the dead node held comes back after `--ack-wait`. `nex ls` then shows the
        /// trigger with nothing pending. The function asks the test's gate before it reports a message, and the
        /// gate stops answering after 40: the kill lands while messages are surely in flight.
        @Test func aNodeKilledMidStreamLosesNothing() async throws {
            try await NATSServer.with(.init(jetStream: true)) { server in
                let url = server.url
                let work = server.directory.path
                let env: [String: String?] = ["NEX_HOME": work + "/nexhome"]
                let config = work + "/node.json"
                try #"{"no_sandbox": true}"#.write(toFile: config, atomically: true, encoding: .utf8)
                let function = work + "/gated.js"
                try """
                (subject, payload) => {
                  this.hostServices.messaging.request('gate', payload);
                  this.hostServices.messaging.publish('done.' + new TextDecoder().decode(payload), payload);
                }
                """.write(toFile: function, atomically: true, encoding: .utf8)

                func nodeUp() async throws -> PeerProcess {
                    let process = try await PeerProcess.start(
                        nex, ["node", "up", "-s", url, "--config", config], environment: env)
                    _ = try await eventuallyValue("the node is up") { process.output.first { $0.contains(" is up") } }
                    return process
                }
                let node = try await nodeUp()
                try await withClient([url]) { client in
                    let js = JetStreamContext(client: client)
                    _ = try await js.createStream(StreamConfig(name: "WORK", subjects: ["work.>"]))
                    let done = try await MessageRecorder(client, subject: "done.>")
                    // Answers the first 40 asks, then none until reopened; counts the asks it holds.
                    let gate = Mutex((answered: 0, held: 0, open: false))
                    let gateSubscription = try await client.subscribe(to: "gate") { m in
                        let answer = gate.withLock { g in
                            if g.open || g.answered < 40 {
                                g.answered += 1
                                return true
                            }
                            g.held += 1
                            return false
                        }
                        if answer, let reply = m.replyTo { try await client.publish(m.bytes, to: reply) }
                    }
                    try await client.flush()
                    let deployed = try await TestEnvironment.runAllowingFailure(
                        nex,
                        [
                            "devrun", function, "--stream", "WORK", "--ack-wait", "2s", "--max-batch", "4",
                            "--max-concurrency", "2", "-s", url,
                        ], environment: env)
                    #expect(deployed.status == 0, "\(deployed.stderr)")
                    let durable = try #require(try await js.consumerNames(stream: "WORK").first)

                    let total = 300
                    for n in 0..<total { _ = try await js.publish(Array("\(n)".utf8), to: "work.item") }
                    try await eventually("the gate holds a message", timeout: .seconds(30)) {
                        gate.withLock { $0.held } > 0
                    }
                    node.signalGroup(SIGKILL)
                    _ = try await node.waitForExit()
                    let held = try await js.consumerInfo(stream: "WORK", name: durable)
                    #expect(held.ackFloor.streamSequence < UInt64(total), "all done before the kill")

                    gate.withLock { $0.open = true }
                    let restarted = try await nodeUp()
                    try await eventually("every message acknowledged", timeout: .seconds(90)) {
                        let info = try await js.consumerInfo(stream: "WORK", name: durable)
                        return info.ackFloor.streamSequence == UInt64(total) && info.pendingAcks == 0
                    }
                    // The reports travel on the function's own connection: the last may come after its ack.
                    try await eventually("every message reported") {
                        let handled = Set(done.messages.map(\.subject))
                        return (0..<total).allSatisfy { handled.contains("done.\($0)") }
                    }
                    try await gateSubscription.unsubscribe()

                    let ls = try await TestEnvironment.runAllowingFailure(nex, ["ls", "-s", url], environment: env)
                    let row = ls.stdout.split(separator: "\n").first { $0.contains(durable) }.map(String.init) ?? ""
                    #expect(row.contains("stream") && row.contains("WORK"), "\(ls.stdout)")
                    #expect(row.split(separator: " ").suffix(3) == ["0", "0", "0"], "\(row)")
                    #expect(try await restarted.terminate() == 0)
                }
            }
        }
    }
}
