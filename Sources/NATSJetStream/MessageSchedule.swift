public import NATS

#if canImport(FoundationEssentials)
    public import FoundationEssentials
#else
    public import Foundation
#endif

/// A message schedule (ADR-51; `@every` and `@at` since nats-server 2.12, cron and time zones since 2.14): a
/// message held on its own subject in a stream that allows schedules, from which the server stores a message on
/// `target` (a literal subject of the same stream) at every tick. A JetStream consumer reads the ticks; a core
/// subscription does not see them.
public struct MessageSchedule: Sendable, Equatable {
    /// When it fires.
    public enum Pattern: Sendable, Equatable {
        /// Every interval (at least 1 s) after the schedule was stored. Ticks missed while the server was down
        /// are not made up for.
        case every(Duration)
        /// A cron expression of six fields, seconds first (`0 */5 * * * *`), or `@hourly`, `@daily`, `@weekly`,
        /// `@monthly`, `@yearly`; in UTC unless `timeZone` names an IANA zone (`Europe/Amsterdam`).
        case cron(String, timeZone: String? = nil)
        /// Once, at this time (at once when it is past); the server then removes the schedule.
        case at(Date)
    }

    public var pattern: Pattern
    /// Where each tick is stored: a literal subject of the schedule's stream, other than the schedule's own.
    public var target: String
    /// Each tick's `Nats-TTL` (the stream must allow message TTLs).
    public var tickTTL: MessageTTL?
    /// Whether each tick replaces the ones before it on `target` (a roll-up), so unread ticks do not pile up.
    public var replacesEarlierTicks: Bool

    public init(
        _ pattern: Pattern, target: String, tickTTL: MessageTTL? = nil, replacesEarlierTicks: Bool = false
    ) {
        self.pattern = pattern
        self.target = target
        self.tickTTL = tickTTL
        self.replacesEarlierTicks = replacesEarlierTicks
    }

    /// The predefined cron names the server takes.
    public static let cronNames: Set<String> = [
        "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
    ]

    /// Refuses what every server would refuse, with the reason: an interval under 1 s, a cron expression
    /// without exactly six fields (a five-field one is never read as minutes-first), an empty time zone, a
    /// target with wildcards.
    public func validate() throws(JetStreamError) {
        switch pattern {
        case .every(let interval):
            guard interval >= .seconds(1) else {
                throw .client("a schedule's interval is at least 1s, not \(Self.goDuration(interval))", code: 400)
            }
        case .cron(let expression, let timeZone):
            let fields = expression.split(whereSeparator: \.isWhitespace)
            if fields.count == 1, Self.cronNames.contains(String(fields[0])) { break }
            guard fields.count == 6 else {
                throw .client(
                    "a cron schedule has six fields, seconds first (\"0 */5 * * * *\" is every five minutes); "
                        + "\"\(expression)\" has \(fields.count)", code: 400)
            }
            if let timeZone, timeZone.isEmpty { throw .client("a schedule's time zone is empty", code: 400) }
        case .at:
            break
        }
        let tokens = target.split(separator: ".", omittingEmptySubsequences: false)
        guard !target.isEmpty, !tokens.contains(where: { $0.isEmpty || $0 == "*" || $0 == ">" }),
            !target.contains(where: \.isWhitespace)
        else {
            throw .client("a schedule's target is one literal subject, not \"\(target)\"", code: 400)
        }
    }

    /// The headers that make a message this schedule.
    public var headers: NATSHeaders {
        var h = NATSHeaders()
        switch pattern {
        case .every(let interval): h["Nats-Schedule"] = "@every " + Self.goDuration(interval)
        case .cron(let expression, let timeZone):
            h["Nats-Schedule"] = expression.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            if let timeZone { h["Nats-Schedule-Time-Zone"] = timeZone }
        case .at(let date):
            h["Nats-Schedule"] = "@at " + date.formatted(.iso8601)
        }
        h["Nats-Schedule-Target"] = target
        if let tickTTL { h["Nats-Schedule-TTL"] = tickTTL.headerValue }
        if replacesEarlierTicks { h["Nats-Schedule-Rollup"] = "sub" }
        return h
    }

    /// The schedule headers a stored message carries (`Nats-Schedule` and `Nats-Schedule-…`), to compare one
    /// stored schedule with another.
    static func scheduleHeaders(of headers: NATSHeaders?) -> [String: String] {
        var found: [String: String] = [:]
        for entry in headers ?? NATSHeaders() where entry.name.hasPrefix("Nats-Schedule") {
            found[entry.name] = entry.value
        }
        return found
    }

    /// Go's duration text for whole seconds or milliseconds (`90s`, `1500ms`), as `@every` takes it.
    static func goDuration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 { return "\(seconds)s" }
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)ms"
    }
}

/// What ``JetStreamContext/ensureSchedule(_:on:payload:)`` did.
public enum ScheduleUpdate: Sendable, Equatable {
    /// The stream already held this schedule (same headers and payload) at this sequence: nothing was published,
    /// so an `@every` schedule kept its timer.
    case unchanged(sequence: UInt64)
    /// The schedule was missing or different, and was stored at this sequence.
    case published(sequence: UInt64)
}

extension JetStreamContext {
    /// Stores `schedule` on `subject` (a subject of a stream that allows schedules), replacing any schedule
    /// there. Re-publishing restarts an `@every` schedule's interval: ``ensureSchedule(_:on:payload:)`` does not.
    @discardableResult
    public func publishSchedule(
        _ schedule: MessageSchedule, on subject: String, payload: some Collection<UInt8> = [UInt8](),
        options: PublishOptions = PublishOptions()
    ) async throws -> PubAck {
        try schedule.validate()
        return try await publish(payload, to: subject, headers: schedule.headers, options: options)
    }

    /// Stores `schedule` on `subject` of `stream` only when it is missing or differs from the one stored there,
    /// so that every node of a workload can ensure the same schedule without restarting its timer. Publishers
    /// racing for the same change are settled by the expected last sequence of the subject.
    public func ensureSchedule(
        _ schedule: MessageSchedule, on subject: String, in stream: String, payload: [UInt8] = []
    ) async throws -> ScheduleUpdate {
        try schedule.validate()
        let wanted = MessageSchedule.scheduleHeaders(of: schedule.headers)
        for _ in 0..<3 {
            var last: UInt64 = 0
            do {
                let stored = try await getMessage(stream: stream, lastOnSubject: subject)
                if MessageSchedule.scheduleHeaders(of: stored.headers) == wanted, stored.payload == payload {
                    return .unchanged(sequence: stored.sequence)
                }
                last = stored.sequence
            } catch let e as JetStreamError where e.errorCode == JetStreamError.Known.noMessageFound {
                last = 0  // none yet
            }
            do {
                let ack = try await publishSchedule(
                    schedule, on: subject, payload: payload,
                    options: PublishOptions(expectedLastSubjectSequence: last))
                return .published(sequence: ack.sequence)
            } catch let e as JetStreamError where e.errorCode == JetStreamError.Known.wrongLastSequence {
                continue  // another publisher changed it first: compare again
            }
        }
        throw JetStreamError.client(
            "the schedule on \(subject) kept changing under this update (three attempts): try again", code: 409)
    }

    /// Removes the schedule on `subject` of `stream` (purges the subject): it fires no more. Ticks already stored
    /// stay.
    public func removeSchedule(on subject: String, in stream: String) async throws {
        try await purgeStream(stream, subject: subject)
    }
}
