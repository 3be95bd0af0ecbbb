import NATSJetStream
import NexModels

/// The stream the nodes keep schedule triggers in (ADR-51): each schedule on its own subject, its ticks on
/// another (the workload's durable consumer reads them, so one copy handles each tick), and a marker per
/// running copy, by which the stop of the last copy knows to remove the schedule.
enum ScheduleStream {
    static let name = "NEX_SCHEDULES"

    /// `$NEX.schedule.<namespace>.<name>.<index>`: the schedule of trigger `index` of a workload.
    static func scheduleSubject(namespace: String, name: String, index: Int) -> String {
        "$NEX.schedule.\(namespace).\(name).\(index)"
    }

    /// `$NEX.tick.<namespace>.<name>.<index>`: where its ticks are stored.
    static func tickSubject(namespace: String, name: String, index: Int) -> String {
        "$NEX.tick.\(namespace).\(name).\(index)"
    }

    /// `$NEX.copy.<namespace>.<name>.<index>.<workload id>`: one copy that runs the trigger.
    static func copySubject(namespace: String, name: String, index: Int, workloadID: String) -> String {
        "$NEX.copy.\(namespace).\(name).\(index).\(workloadID)"
    }

    /// The copies of trigger `index` of a workload, as a subject filter.
    static func copiesFilter(namespace: String, name: String, index: Int) -> String {
        "$NEX.copy.\(namespace).\(name).\(index).*"
    }

    /// Makes the stream, or leaves it as it is (every node asks for the same one).
    static func ensure(_ js: JetStreamContext) async throws {
        var config = StreamConfig(name: name, subjects: ["$NEX.schedule.>", "$NEX.tick.>", "$NEX.copy.>"])
        config.description = "Nex schedule triggers: schedules, their ticks, and the copies that run them"
        config.allowMessageSchedules = true
        config.allowRollup = true
        config.maxMessagesPerSubject = 1
        _ = try await js.createOrUpdateStream(config)
    }

    /// The schedule a trigger asks for, its ticks replacing each other (they do not pile up while no copy runs).
    static func schedule(of trigger: ScheduleTrigger, target: String) -> MessageSchedule? {
        if let cron = trigger.cron {
            return MessageSchedule(
                .cron(cron, timeZone: trigger.timezone), target: target, replacesEarlierTicks: true)
        }
        guard let every = trigger.every, let ns = GoDuration.parse(every) else { return nil }
        return MessageSchedule(.every(.nanoseconds(ns)), target: target, replacesEarlierTicks: true)
    }
}
