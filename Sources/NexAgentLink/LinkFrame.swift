/// One message on the private link between a node and one of its agents.
///
/// The link carries the hot path only (a function's triggers, their results and the workload's log lines);
/// everything else between node and agent (handshake, deploy, events, host calls) goes over the internal
/// NATS server. On the wire: a 4-byte big-endian length of the rest, a kind byte, an 8-byte big-endian id,
/// then the body.
public enum LinkFrame: Equatable, Sendable {
    /// Node → agent: run the function for a message on `subject`; `traceParent` is the W3C `traceparent` of
    /// the node's span for the call, which the agent hands on with the function's host-service calls.
    case trigger(id: UInt64, subject: String, payload: [UInt8], traceParent: String? = nil)
    /// Agent → node: the answer to trigger `id`: the reply (`ok`) or the error text.
    case result(id: UInt64, ok: Bool, elapsedNanos: Int64, body: [UInt8])
    /// Agent → node: a line the workload logged (`level` as in ``NexModels/LogEntry``), written by the thread
    /// that logged it, so a trigger's lines come before its result.
    case log(level: Int8, text: [UInt8])

    /// The largest frame accepted (well above NATS's 1 MiB default payload, far below memory trouble).
    public static let maxLength = 64 << 20

    private static let triggerKind: UInt8 = 1
    private static let resultKind: UInt8 = 2
    /// A trigger with a trace context. A kind of its own, so that an agent built before trace contexts
    /// refuses the frame (and its link ends with the reason) instead of reading the context as payload.
    private static let tracedTriggerKind: UInt8 = 3
    private static let logKind: UInt8 = 4

    /// The frame as bytes for the wire.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        switch self {
        case .trigger(let id, let subject, let payload, let traceParent):
            // Body: subject length (2), subject, [trace length (1), trace,] payload. A context that does not
            // fit one length byte is left out (a traceparent is 55 bytes).
            let name = Array(subject.utf8)
            let trace = traceParent.map { Array($0.utf8) }.flatMap { (1...255).contains($0.count) ? $0 : nil }
            let traced = trace.map { 1 + $0.count } ?? 0
            out.reserveCapacity(4 + 1 + 8 + 2 + name.count + traced + payload.count)
            Self.append(UInt32(1 + 8 + 2 + name.count + traced + payload.count), to: &out)
            out.append(trace == nil ? Self.triggerKind : Self.tracedTriggerKind)
            Self.append(id, to: &out)
            Self.append(UInt16(name.count), to: &out)
            out += name
            if let trace {
                out.append(UInt8(trace.count))
                out += trace
            }
            out += payload
        case .result(let id, let ok, let elapsedNanos, let body):
            out.reserveCapacity(4 + 1 + 8 + 1 + 8 + body.count)
            Self.append(UInt32(1 + 8 + 1 + 8 + body.count), to: &out)
            out.append(Self.resultKind)
            Self.append(id, to: &out)
            out.append(ok ? 1 : 0)
            Self.append(UInt64(bitPattern: elapsedNanos), to: &out)
            out += body
        case .log(let level, let text):
            // Body: the level (1, signed), then the text. The id is unused (0).
            out.reserveCapacity(4 + 1 + 8 + 1 + text.count)
            Self.append(UInt32(1 + 8 + 1 + text.count), to: &out)
            out.append(Self.logKind)
            Self.append(UInt64(0), to: &out)
            out.append(UInt8(bitPattern: level))
            out += text
        }
        return out
    }

    /// Why bytes on the link are not a frame; the link is closed after one.
    public struct MalformedFrame: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Decodes the frame at the start of `bytes`: the frame and how many bytes it took, or nil while the
    /// frame is still incomplete.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(MalformedFrame) -> (LinkFrame, Int)? {
        guard bytes.count >= 4 else { return nil }
        let start = bytes.startIndex
        let length = Int(read(UInt32.self, bytes, at: start))
        guard length >= 9, length <= maxLength else {
            throw MalformedFrame(description: "a frame of \(length) bytes")
        }
        guard bytes.count >= 4 + length else { return nil }
        let kind = bytes[start + 4]
        let id = read(UInt64.self, bytes, at: start + 5)
        let body = start + 13
        let end = start + 4 + length
        switch kind {
        case triggerKind, tracedTriggerKind:
            guard end - body >= 2 else { throw MalformedFrame(description: "a trigger without a subject") }
            let nameLength = Int(read(UInt16.self, bytes, at: body))
            guard end - body - 2 >= nameLength else { throw MalformedFrame(description: "a truncated subject") }
            // Found by fuzzing: bytes that are not UTF-8 became U+FFFD, a subject other than the one sent.
            guard let subject = String(validating: bytes[(body + 2)..<(body + 2 + nameLength)], as: UTF8.self) else {
                throw MalformedFrame(description: "a subject that is not UTF-8")
            }
            let traceAt = body + 2 + nameLength
            var trace: String?
            var payloadAt = traceAt
            if kind == tracedTriggerKind {
                guard end - traceAt >= 1, bytes[traceAt] > 0, end - traceAt - 1 >= Int(bytes[traceAt]) else {
                    throw MalformedFrame(description: "a missing or truncated trace context")
                }
                payloadAt = traceAt + 1 + Int(bytes[traceAt])
                trace = String(validating: bytes[(traceAt + 1)..<payloadAt], as: UTF8.self)
                guard trace != nil else { throw MalformedFrame(description: "a trace context that is not UTF-8") }
            }
            return (
                .trigger(id: id, subject: subject, payload: Array(bytes[payloadAt..<end]), traceParent: trace),
                4 + length
            )
        case resultKind:
            guard end - body >= 9 else { throw MalformedFrame(description: "a truncated result") }
            // Found by fuzzing: any byte but 1 read as a failure; only 0 and 1 are results.
            guard bytes[body] <= 1 else { throw MalformedFrame(description: "a result flag of \(bytes[body])") }
            let elapsed = Int64(bitPattern: read(UInt64.self, bytes, at: body + 1))
            return (
                .result(id: id, ok: bytes[body] == 1, elapsedNanos: elapsed, body: Array(bytes[(body + 9)..<end])),
                4 + length
            )
        case logKind:
            // A log line answers nothing: its id is 0, so that it reads back as the bytes that were sent.
            guard id == 0 else { throw MalformedFrame(description: "a log line with an id of \(id)") }
            guard end - body >= 1 else { throw MalformedFrame(description: "a log line without a level") }
            return (.log(level: Int8(bitPattern: bytes[body]), text: Array(bytes[(body + 1)..<end])), 4 + length)
        default:
            throw MalformedFrame(description: "an unknown frame kind \(kind)")
        }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { out += $0 }
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: ArraySlice<UInt8>, at index: Int) -> T {
        var value: T = 0
        for offset in 0..<MemoryLayout<T>.size { value = value << 8 | T(bytes[index + offset]) }
        return value
    }
}
