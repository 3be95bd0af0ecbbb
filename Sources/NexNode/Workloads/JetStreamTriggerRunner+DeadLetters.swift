import Foundation
import Logging
import NATS
import NATSJetStream
import NexModels

/// Messages that failed for good: published to the trigger's dead-letter subject, then terminated.
extension JetStreamTriggerRunner {
    /// Publishes a message that failed its last delivery (or failed for good) to the dead-letter subject, then
    /// terminates it. A publish that fails leaves it nak'd: it is never lost.
    func deadLetter(_ message: JetStreamMessage, error: String) async {
        let reason = TriggerEvent.firstLine(error)
        if let subject = plan.deadLetterSubject {
            do {
                try await publishDeadLetter(
                    payload: message.bytes, headers: message.headers, sequence: message.metadata.streamSequence,
                    deliveries: message.metadata.delivered, error: reason, to: subject)
            } catch {
                logger.warning(
                    "a dead letter could not be published; the message is nak'd and comes again",
                    metadata: ["error": "\(error)", "nats.subject": "\(subject)"])
                do { try await message.nak(delay: plan.ackWait) } catch {
                    logger.debug("the nak was not sent either; ack_wait brings the message back")
                }
                return
            }
        } else {
            logger.warning(
                "a message failed for good and is dropped (the trigger has no dead_letter_subject)",
                metadata: ["nats.stream_sequence": "\(message.metadata.streamSequence)", "error": "\(reason)"])
        }
        metrics.deadLettered.increment()
        do { try await message.term(reason: reason) } catch {
            logger.warning("a dead-lettered message could not be terminated", metadata: ["error": "\(error)"])
        }
    }

    private func publishDeadLetter(
        payload: [UInt8], headers: NATSHeaders?, sequence: UInt64, deliveries: UInt64, error: String, to subject: String
    ) async throws {
        var h = NATSHeaders()
        for entry in headers ?? NATSHeaders() where !entry.name.hasPrefix("Nats-") {
            h[entry.name] = entry.value
        }
        h["Nex-Dead-Letter-Stream"] = plan.stream
        h["Nex-Dead-Letter-Sequence"] = String(sequence)
        h["Nex-Dead-Letter-Deliveries"] = String(deliveries)
        h["Nex-Dead-Letter-Error"] = error
        // One dead letter per message, whichever node sends it (a stream on the subject drops repeats).
        h["Nats-Msg-Id"] = "nex-dead-letter-\(plan.durable)-\(plan.stream)-\(sequence)"
        var options = PublishOptions()
        options.retryAttempts = 0
        do {
            _ = try await js.publish(payload, to: subject, headers: h, options: options)
        } catch let e as JetStreamError where e.code == 503 {
            // No stream keeps the subject: a plain publish is all there is.
            try await js.client.publish(payload, to: subject, headers: h)
            try await js.client.flush()
        }
    }

    /// The waits between the attempts to dead-letter a message from an advisory.
    static let advisoryRetries: [Duration] = [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .zero]

    /// A message given up by the server (its last delivery was never answered: its node died, or lost the
    /// server, holding it): dead-lettered from the stream. The copies share the advisories in one queue
    /// group, so one node acts on each.
    func followGivenUpMessages(_ client: NATSClient) async throws {
        let plan = self.plan
        let sub = try await client.subscribe(
            to: ConsumerAdvisory.maxDeliveriesSubject(stream: plan.stream, consumer: plan.durable),
            queue: "nex-dead-letters-\(plan.durable)"
        ) { m in
            let advisory: ConsumerAdvisory.MaxDeliveries
            do { advisory = try JSONDecoder().decode(ConsumerAdvisory.MaxDeliveries.self, from: Data(m.bytes)) } catch {
                self.logger.debug("an advisory that is not one", metadata: ["error": "\(error)"])
                return
            }
            guard let subject = plan.deadLetterSubject else {
                self.metrics.deadLettered.increment()  // given up, as a dropped message is counted above
                self.logger.warning(
                    "the server gave a message up after its last delivery did not finish (no dead_letter_subject)",
                    metadata: ["nats.stream_sequence": "\(advisory.streamSequence)"])
                return
            }
            // The advisory comes once: tried again a few times (the server may be busy or restarting).
            for (attempt, wait) in Self.advisoryRetries.enumerated() {
                do {
                    let stored = try await self.js.getMessage(stream: plan.stream, sequence: advisory.streamSequence)
                    try await self.publishDeadLetter(
                        payload: stored.payload, headers: stored.headers, sequence: advisory.streamSequence,
                        deliveries: advisory.deliveries,
                        error: "its last delivery did not finish (its node died or lost the server holding it)",
                        to: subject)
                    self.metrics.deadLettered.increment()
                    return
                } catch let e as JetStreamError where e.errorCode == JetStreamError.Known.noMessageFound {
                    self.logger.warning(
                        "a message the server gave up is no longer in its stream; nothing to dead-letter",
                        metadata: ["nats.stream_sequence": "\(advisory.streamSequence)"])
                    return
                } catch {
                    let last = attempt == Self.advisoryRetries.count - 1
                    self.logger.warning(
                        last
                            ? "a message the server gave up could not be dead-lettered"
                            : "a message the server gave up could not be dead-lettered yet; trying again",
                        metadata: ["error": "\(error)", "nats.stream_sequence": "\(advisory.streamSequence)"])
                    if last { return }
                }
                do { try await Task.sleep(for: wait) } catch { return }  // the trigger is stopping
            }
        }
        try await client.flush()
        state.withLock { $0.advisories = sub }
    }
}
