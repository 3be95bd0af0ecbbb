import Foundation
import Logging
import NATS
import NATSJetStream
import NexModels

/// A schedule trigger's schedule, kept once per workload in ``ScheduleStream`` while any copy runs.
extension JetStreamTriggerRunner {
    /// Stores the schedule again if it went missing or changed (another copy's stop may have removed it).
    func checkSchedule(_ planned: JetStreamTriggerPlan.PlannedSchedule) async {
        do {
            let update = try await js.ensureSchedule(
                planned.schedule, on: planned.subject, in: ScheduleStream.name, payload: planned.payload)
            if case .published = update {
                logger.info("the schedule was missing: stored again", metadata: ["nats.subject": "\(planned.subject)"])
            }
        } catch {
            logger.warning(
                "the schedule could not be checked; checked again later",
                metadata: ["error": "\(error)", "nats.subject": "\(planned.subject)"])
        }
    }

    /// Marks this copy as one that runs the schedule, then stores the schedule unless the stream already holds
    /// it unchanged (re-storing it would restart an `@every` interval).
    static func keep(_ planned: JetStreamTriggerPlan.PlannedSchedule, copy: String, _ js: JetStreamContext)
        async throws(NexError)
    {
        do {
            try await ScheduleStream.ensure(js)
            _ = try await js.publish(
                [UInt8](),
                to: ScheduleStream.copySubject(
                    namespace: planned.namespace, name: planned.name, index: planned.index, workloadID: copy))
            _ = try await js.ensureSchedule(
                planned.schedule, on: planned.subject, in: ScheduleStream.name, payload: planned.payload)
        } catch let e as JetStreamError where e.errorCode == 10223 {
            throw NexError(
                .invalidRequest, "the schedule's timezone is not one the NATS server knows: \(e.description)")
        } catch let e as JetStreamError where (10188...10192).contains(e.errorCode) {
            throw NexError(.invalidRequest, "the NATS server refused the schedule: \(e.description)")
        } catch {
            throw NexError(
                .unavailable,
                "cannot keep the schedule in stream \(ScheduleStream.name) (message schedules need nats-server 2.12, "
                    + "cron 2.14): \(error)")
        }
    }

    /// This copy no longer runs the schedule; the last copy to go removes it. (A copy that starts at that very
    /// moment may find the schedule gone after it stored it: every copy checks it again every
    /// ``scheduleCheckInterval``.)
    static func release(
        _ planned: JetStreamTriggerPlan.PlannedSchedule, copy: String, _ js: JetStreamContext, _ logger: Logger
    ) async {
        do {
            try await js.purgeStream(
                ScheduleStream.name,
                subject: ScheduleStream.copySubject(
                    namespace: planned.namespace, name: planned.name, index: planned.index, workloadID: copy))
            let left = try await js.subjectCounts(
                stream: ScheduleStream.name,
                filter: ScheduleStream.copiesFilter(
                    namespace: planned.namespace, name: planned.name, index: planned.index))
            if left.isEmpty {
                try await js.removeSchedule(on: planned.subject, in: ScheduleStream.name)
                logger.info(
                    "the last copy stopped: its schedule is removed", metadata: ["nats.subject": "\(planned.subject)"])
            }
        } catch {
            logger.warning(
                "the schedule could not be released; its ticks go on (at most one waits while no copy runs)",
                metadata: ["error": "\(error)", "nats.subject": "\(planned.subject)"])
        }
    }
}
