import Logging
import NATS
import NATSTestSupport
import NexModels
import Testing

@testable import NexNode

/// Events and logs that cannot be published are counted (and logged), not dropped silently.
@Suite(.timeLimit(.minutes(1))) struct NexEventPublisherTests {
    @Test func failedPublishesAreCounted() async throws {
        try await withServerAndClient { _, client in
            let publisher = EventPublisher(
                client: client, nodeID: "NTEST", failures: PublishFailures(), logger: Logger(label: "test"))
            await publisher.publish(NexEventType.heartbeat, LameDuckEvent(version: "1", id: "NTEST"))
            #expect(publisher.failures.events.load(ordering: .relaxed) == 0)
            await client.close()
            await publisher.publish(NexEventType.heartbeat, LameDuckEvent(version: "1", id: "NTEST"))
            await publisher.log(Array("{}".utf8), namespace: "default", workloadName: "w", workloadID: "id")
            #expect(publisher.failures.events.load(ordering: .relaxed) == 1)
            #expect(publisher.failures.logs.load(ordering: .relaxed) == 1)
        }
    }
}
