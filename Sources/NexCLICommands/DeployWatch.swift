import Foundation
import NATS
import NexControlClient
import NexModels

/// What a deploy turned into, as `devrun` and `run` report it.
enum DeployOutcome: Sendable {
    /// Running: a function subscribed to its triggers, or a service still up after the settle time.
    case running
    /// Accepted, and not waited for (`--no-wait`).
    case accepted
    /// It exited (or failed to start) before it settled: its exit code, the node's reason and its last lines.
    case exited(code: Int, message: String, lastLines: [String])
}

/// Watches one namespace's workload exits and one workload name's log lines from before a deploy is sent, so
/// that a workload that dies at once is seen with its exit code and last lines. Subscriptions only: nothing
/// runs in the background, and ``close()`` ends them.
struct DeployWatch {
    private let client: NATSClient
    private let exits: NATSSubscription
    private let logs: NATSSubscription
    /// The most lines kept of a workload that exited.
    static let keptLines = 20

    /// Subscribes before the deploy is sent; the server has the subscriptions when this returns.
    init(_ nex: NexControlClient, name: String) async throws {
        client = nex.client
        exits = try await client.subscribe(
            to: NexSubjects.event(namespace: nex.namespace, type: NexEventType.workloadUndeployed))
        do {
            logs = try await client.subscribe(
                to: NexSubjects.logsFilter(namespace: nex.namespace, node: nil, workloadName: name, workloadID: nil))
        } catch {
            exits.unsubscribeNow()
            throw error
        }
        do { try await client.flush() } catch {
            exits.unsubscribeNow()
            logs.unsubscribeNow()
            throw error
        }
    }

    /// Waits up to `settle` for workload `id` to exit: its event, or nil when it is still present then.
    func exit(of id: String, within settle: Duration) async throws -> WorkloadEvent? {
        let deadline = ContinuousClock.now + settle
        while true {
            let left = max(deadline - ContinuousClock.now, .zero)
            let message: NATSMessage?
            do { message = try await exits.nextMessage(timeout: left) } catch let e as NATSError
                where e.code == .timeout
            {
                return nil
            }
            guard let message else { return nil }
            let event: CloudEvent<WorkloadEvent>
            do { event = try JSONDecoder().decode(CloudEvent<WorkloadEvent>.self, from: Data(message.bytes)) } catch {
                continue  // not an event of this contract: not the one awaited
            }
            if event.data.workloadID == id { return event.data }
        }
    }

    /// The last lines workload `id` logged. Lines still on their way after its exit are waited for until none
    /// came for 200 ms (at most 1 s): the node forwards a workload's output apart from its exit.
    func lastLines(of id: String) async throws -> [String] {
        var lines: [String] = []
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            let message: NATSMessage?
            do { message = try await logs.nextMessage(timeout: .milliseconds(200)) } catch let e as NATSError
                where e.code == .timeout
            {
                break
            }
            guard let message else { break }
            // Not a log entry of this contract: not one of the workload's lines.
            guard let entry = try? JSONDecoder().decode(LogEntry.self, from: Data(message.bytes)) else { continue }
            if entry.id == id { lines.append(entry.text) }
        }
        return Array(lines.suffix(Self.keptLines))
    }

    /// Ends both subscriptions.
    func close() {
        exits.unsubscribeNow()
        logs.unsubscribeNow()
    }
}
