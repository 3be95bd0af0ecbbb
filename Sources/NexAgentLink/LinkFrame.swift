import Foundation
public import NexModels

/// One message on the private link between a node and one of its agents: the only road between the two.
///
/// On the wire: a 4-byte big-endian length of the rest, a kind byte, an 8-byte big-endian id, then the body.
/// A request carries an id its sender chose (never 0, unique among the sender's requests in flight) and its
/// answer repeats it; the node numbers deploys, stops, heartbeats and triggers, the agent its host calls. A
/// one-way frame carries 0. `docs/agent-protocol.md` describes every frame and the conversation.
public enum LinkFrame: Equatable, Sendable {
    /// Agent → node, the agent's first frame: who it is and the protocol it speaks.
    case hello(AgentHandshake)
    /// Node → agent, the answer to `hello`: welcome, or a refusal (then the node closes the link).
    case welcome(AgentResponse)
    /// Node → agent: run this workload. Answered with `reply`.
    case deploy(id: UInt64, AgentDeployRequest)
    /// Node → agent: stop the workload (SIGTERM, then SIGKILL after its grace). Answered with `reply`.
    case stop(id: UInt64)
    /// Node → agent: are you alive? Answered with `reply` (its message: the workload id, if any).
    case heartbeat(id: UInt64)
    /// Agent → node: the answer to deploy, stop or heartbeat `id`.
    case reply(id: UInt64, AgentResponse)
    /// Node → agent: run the function for a message on `subject`; `traceParent` is the W3C `traceparent` of
    /// the node's span for the call, which the agent hands on with the function's host-service calls.
    /// `context`: what the function gets as its third argument, as JSON (where a stream message came from).
    case trigger(id: UInt64, subject: String, payload: [UInt8], traceParent: String? = nil, context: [UInt8]? = nil)
    /// Agent → node: the answer to trigger `id`: the reply (`ok`) or the error text.
    case result(id: UInt64, ok: Bool, elapsedNanos: Int64, body: [UInt8], permanent: Bool = false)
    /// Agent → node: a host-service call of the function (`id`: the agent's). Answered with `hostAnswer`.
    case hostCall(id: UInt64, HostCall)
    /// Node → agent: the answer to host call `id`: the result as JSON (`ok`), or the error text.
    case hostAnswer(id: UInt64, ok: Bool, body: [UInt8])
    /// Agent → node: a line the workload logged (`level` as in ``NexModels/LogEntry``). A function's lines are
    /// written by the thread that logged them, so a trigger's lines come before its result.
    case log(level: Int8, text: [UInt8])
    /// Agent → node: the workload's process ended by itself (after its last log lines).
    case exited(code: Int32, message: String)

    /// A host-service call: `service.method(arguments)`, with the trace context of the trigger that made it.
    public struct HostCall: Equatable, Sendable {
        public var service: String
        public var method: String
        /// The arguments, a JSON array.
        public var arguments: [UInt8]
        public var traceParent: String?

        public init(service: String, method: String, arguments: [UInt8], traceParent: String? = nil) {
            self.service = service
            self.method = method
            self.arguments = arguments
            self.traceParent = traceParent
        }
    }

    /// The link protocol this build speaks; `hello` carries it and the node refuses any other.
    public static let protocolVersion = 4

    /// The largest frame accepted (well above NATS's 1 MiB default payload, far below memory trouble).
    public static let maxLength = 64 << 20

    enum Kind: UInt8 {
        case trigger = 1
        case result = 2
        /// A trigger with a trace context: a kind of its own, so the common untraced trigger carries no flag.
        case tracedTrigger = 3
        case log = 4
        case hello = 5
        case welcome = 6
        case deploy = 7
        case stop = 8
        case heartbeat = 9
        case reply = 10
        case hostCall = 11
        case hostAnswer = 12
        case exited = 13
        /// A trigger with a context for the function (and a trace context, maybe empty).
        case contextTrigger = 14

        /// Frames that answer nothing and ask nothing: their id is 0.
        var isOneWay: Bool {
            switch self {
            case .hello, .welcome, .log, .exited: true
            default: false
            }
        }
    }

    /// The request's or answer's id; 0 for a one-way frame.
    public var id: UInt64 {
        switch self {
        case .deploy(let id, _), .stop(let id), .heartbeat(let id), .reply(let id, _), .hostCall(let id, _),
            .hostAnswer(let id, _, _), .trigger(let id, _, _, _, _), .result(let id, _, _, _, _):
            id
        case .hello, .welcome, .log, .exited: 0
        }
    }

    /// The frame's kind, for messages about it.
    public var kindName: String {
        switch self {
        case .hello: "hello"
        case .welcome: "welcome"
        case .deploy: "deploy"
        case .stop: "stop"
        case .heartbeat: "heartbeat"
        case .reply: "reply"
        case .trigger: "trigger"
        case .result: "result"
        case .hostCall: "host call"
        case .hostAnswer: "host answer"
        case .log: "log"
        case .exited: "exited"
        }
    }

    // MARK: Encoding

    /// The frame as bytes for the wire.
    public func encoded() -> [UInt8] {
        // The header first, its length patched in at the end: the payload is copied once, into the frame.
        var out: [UInt8]
        switch self {
        case .hello(let hello): out = Self.begin(.hello, id, Self.json(hello))
        case .welcome(let answer): out = Self.begin(.welcome, id, Self.json(answer))
        case .deploy(_, let request): out = Self.begin(.deploy, id, Self.json(request))
        case .stop: out = Self.begin(.stop, id)
        case .heartbeat: out = Self.begin(.heartbeat, id)
        case .reply(_, let answer): out = Self.begin(.reply, id, Self.json(answer))
        case .trigger(_, let subject, let payload, let traceParent, let context):
            // Body: subject length (2), subject, [trace length (1), trace,] [context length (4), context,]
            // payload. A trace context that does not fit one length byte is left out (a traceparent is 55 bytes).
            // A function context makes it a context trigger, whose trace length is always there (maybe 0).
            let trace = Self.shortText(traceParent)
            let context = context ?? []
            let kind: Kind = !context.isEmpty ? .contextTrigger : trace.isEmpty ? .trigger : .tracedTrigger
            out = Self.begin(kind, id, capacity: 262 + subject.utf8.count + context.count + payload.count)
            Self.append(UInt16(subject.utf8.count), to: &out)
            out += subject.utf8
            if kind != .trigger {
                out.append(UInt8(trace.count))
                out += trace
            }
            if kind == .contextTrigger {
                Self.append(UInt32(context.count), to: &out)
                out += context
            }
            out += payload
        case .result(_, let ok, let elapsedNanos, let reply, let permanent):
            // 0 failed, 1 ok, 2 failed for good (a failure the function marked permanent).
            out = Self.begin(.result, id, capacity: 9 + reply.count)
            out.append(ok ? 1 : (permanent ? 2 : 0))
            Self.append(UInt64(bitPattern: elapsedNanos), to: &out)
            out += reply
        case .hostCall(_, let call):
            // Body: service, method and trace context, each a length byte and the text; the arguments.
            out = Self.begin(.hostCall, id, capacity: 3 + 255 * 3 + call.arguments.count)
            for text in [Self.shortText(call.service), Self.shortText(call.method), Self.shortText(call.traceParent)] {
                out.append(UInt8(text.count))
                out += text
            }
            out += call.arguments
        case .hostAnswer(_, let ok, let answer):
            out = Self.begin(.hostAnswer, id, capacity: 1 + answer.count)
            out.append(ok ? 1 : 0)
            out += answer
        case .log(let level, let text):
            out = Self.begin(.log, id, capacity: 1 + text.count)
            out.append(UInt8(bitPattern: level))
            out += text
        case .exited(let code, let message):
            out = Self.begin(.exited, id, capacity: 4 + message.utf8.count)
            Self.append(UInt32(bitPattern: code), to: &out)
            out += message.utf8
        }
        let length = UInt32(truncatingIfNeeded: out.count - 4).bigEndian
        withUnsafeBytes(of: length) { bytes in
            for index in 0..<4 { out[index] = bytes[index] }
        }
        return out
    }

    /// A frame's header (its length still 0), ready for `capacity` bytes of body, followed by `body`.
    private static func begin(_ kind: Kind, _ id: UInt64, _ body: [UInt8] = [], capacity: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(13 + max(capacity, body.count))
        out += [0, 0, 0, 0, kind.rawValue]
        append(id, to: &out)
        out += body
        return out
    }

    /// Control frames as JSON with sorted keys: the same value gives the same bytes.
    private static func json(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // The link's own types encode to JSON without fail (strings, numbers, arrays and maps of them).
        return (try? encoder.encode(value)).map(Array.init) ?? Array("{}".utf8)
    }

    /// A text that fits one length byte (1…255 bytes of UTF-8); otherwise none.
    private static func shortText(_ text: String?) -> [UInt8] {
        guard let text else { return [] }
        let bytes = Array(text.utf8)
        return bytes.count <= 255 ? bytes : []
    }

    // MARK: Decoding

    /// Why bytes on the link are not a frame; the link is closed after one.
    public struct MalformedFrame: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Decodes the frame at the start of `bytes`: the frame and how many bytes it took, or nil while the
    /// frame is still incomplete.
    /// `maxLength`: the largest frame accepted (a node takes less from its agents than it may send them).
    public static func decode(_ bytes: ArraySlice<UInt8>, maxLength: Int = LinkFrame.maxLength) throws(MalformedFrame)
        -> (LinkFrame, Int)?
    {
        guard bytes.count >= 4 else { return nil }
        let start = bytes.startIndex
        let length = Int(read(UInt32.self, bytes, at: start))
        guard length >= 9, length <= maxLength else {
            throw MalformedFrame(description: "a frame of \(length) bytes")
        }
        guard bytes.count >= 4 + length else { return nil }
        guard let kind = Kind(rawValue: bytes[start + 4]) else {
            throw MalformedFrame(description: "an unknown frame kind \(bytes[start + 4])")
        }
        let id = read(UInt64.self, bytes, at: start + 5)
        // An answer or request without an id, or a one-way frame with one, would not read back as sent.
        guard (id == 0) == kind.isOneWay else {
            throw MalformedFrame(description: "a \(kind) frame with an id of \(id)")
        }
        let body = bytes[(start + 13)..<(start + 4 + length)]
        return (try frame(kind, id: id, body: body), 4 + length)
    }

    private static func frame(_ kind: Kind, id: UInt64, body: ArraySlice<UInt8>) throws(MalformedFrame) -> LinkFrame {
        var reader = BodyReader(bytes: body, kind: kind)
        switch kind {
        case .hello: return .hello(try reader.json(AgentHandshake.self))
        case .welcome: return .welcome(try reader.json(AgentResponse.self))
        case .deploy: return .deploy(id: id, try reader.json(AgentDeployRequest.self))
        case .reply: return .reply(id: id, try reader.json(AgentResponse.self))
        case .stop, .heartbeat:
            guard body.isEmpty else { throw MalformedFrame(description: "a \(kind) frame with a body") }
            return kind == .stop ? .stop(id: id) : .heartbeat(id: id)
        case .trigger, .tracedTrigger, .contextTrigger:
            let subjectLength = Int(try reader.integer(UInt16.self, "a trigger without a subject"))
            // Found by fuzzing: bytes that are not UTF-8 became U+FFFD, a subject other than the one sent.
            let subject = try reader.text(subjectLength, "subject")
            var trace: String?
            if kind != .trigger {
                trace = try reader.text(Int(try reader.integer(UInt8.self, "a missing trace context")), "trace context")
                if kind == .tracedTrigger, trace?.isEmpty != false {
                    throw MalformedFrame(description: "an empty trace context")
                }
                if trace?.isEmpty == true { trace = nil }
            }
            var context: [UInt8]?
            if kind == .contextTrigger {
                let length = Int(try reader.integer(UInt32.self, "a missing function context"))
                guard reader.remaining >= length, length > 0 else {
                    throw MalformedFrame(description: "a truncated or empty function context")
                }
                context = Array(reader.bytes.prefix(length))
                reader.bytes = reader.bytes.dropFirst(length)
            }
            return .trigger(id: id, subject: subject, payload: reader.rest(), traceParent: trace, context: context)
        case .result:
            let status = try reader.integer(UInt8.self, "a truncated result")
            guard status <= 2 else { throw MalformedFrame(description: "a result status of \(status)") }
            let elapsed = Int64(bitPattern: try reader.integer(UInt64.self, "a truncated result"))
            return .result(id: id, ok: status == 1, elapsedNanos: elapsed, body: reader.rest(), permanent: status == 2)
        case .hostCall:
            let service = try reader.text(Int(try reader.integer(UInt8.self, "a truncated host call")), "service")
            let method = try reader.text(Int(try reader.integer(UInt8.self, "a truncated host call")), "method")
            let trace = try reader.text(Int(try reader.integer(UInt8.self, "a truncated host call")), "trace context")
            guard !service.isEmpty, !method.isEmpty else {
                throw MalformedFrame(description: "a host call without a service or method")
            }
            return .hostCall(
                id: id,
                HostCall(
                    service: service, method: method, arguments: reader.rest(),
                    traceParent: trace.isEmpty ? nil : trace))
        case .hostAnswer:
            return .hostAnswer(id: id, ok: try reader.flag(), body: reader.rest())
        case .log:
            return .log(
                level: Int8(bitPattern: try reader.integer(UInt8.self, "a log line without a level")),
                text: reader.rest())
        case .exited:
            let code = Int32(bitPattern: try reader.integer(UInt32.self, "an exit without a code"))
            return .exited(code: code, message: try reader.text(reader.remaining, "exit message"))
        }
    }

    /// Reads a frame's body front to back; every read names what was missing.
    private struct BodyReader {
        var bytes: ArraySlice<UInt8>
        let kind: Kind

        var remaining: Int { bytes.count }

        mutating func integer<T: FixedWidthInteger>(_: T.Type, _ missing: String) throws(MalformedFrame) -> T {
            guard bytes.count >= MemoryLayout<T>.size else { throw MalformedFrame(description: missing) }
            let value = LinkFrame.read(T.self, bytes, at: bytes.startIndex)
            bytes = bytes.dropFirst(MemoryLayout<T>.size)
            return value
        }

        /// Found by fuzzing: any byte but 1 read as false; only 0 and 1 are flags.
        mutating func flag() throws(MalformedFrame) -> Bool {
            let byte = try integer(UInt8.self, "a truncated \(kind) frame")
            guard byte <= 1 else { throw MalformedFrame(description: "a \(kind) flag of \(byte)") }
            return byte == 1
        }

        mutating func text(_ count: Int, _ what: String) throws(MalformedFrame) -> String {
            guard bytes.count >= count else { throw MalformedFrame(description: "a truncated \(what)") }
            guard let text = String(validating: bytes.prefix(count), as: UTF8.self) else {
                throw MalformedFrame(description: "a \(what) that is not UTF-8")
            }
            bytes = bytes.dropFirst(count)
            return text
        }

        mutating func json<T: Decodable>(_: T.Type) throws(MalformedFrame) -> T {
            do { return try JSONDecoder().decode(T.self, from: Data(bytes)) } catch {
                throw MalformedFrame(description: "a \(kind) frame whose body is not its JSON: \(error)")
            }
        }

        func rest() -> [UInt8] { Array(bytes) }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { out += $0 }
    }

    fileprivate static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: ArraySlice<UInt8>, at index: Int) -> T {
        var value: T = 0
        for offset in 0..<MemoryLayout<T>.size { value = value << 8 | T(bytes[index + offset]) }
        return value
    }
}
