public import NIOCore

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Decodes server operations from a `ByteBuffer`, one at a time.
///
/// `next(_:)` returns nil without consuming anything when the buffer does not yet hold a whole operation, so
/// a caller appends more bytes and calls again; the result does not depend on how the bytes were split.
public struct ProtocolParser: Sendable {
    /// Longest control line accepted for MSG/HMSG (the server's `max_control_line` default).
    public var maxControlLineLength: Int
    /// Largest payload accepted; bigger frames are a protocol error rather than unbounded buffering.
    public var maxPayload: Int
    /// Longest INFO or -ERR line accepted (INFO grows with the cluster's URLs).
    public var maxInfoLineLength = 1 << 20
    /// Bytes needed before the pending frame can complete; saves re-parsing while a payload streams in.
    private var pendingFrameLength = 0

    /// Bytes the operation waiting at the start of the buffer needs in total, once its control line was read
    /// (0 when unknown). Lets a reader copy just that frame when it straddles two reads.
    public var bytesNeeded: Int { pendingFrameLength }

    public init(maxControlLineLength: Int = 4096, maxPayload: Int = 64 << 20) {
        self.maxControlLineLength = maxControlLineLength
        self.maxPayload = maxPayload
    }

    /// Decodes the next operation, or returns nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) throws(ProtocolError) -> ServerOp? {
        var messages: [NATSMessage] = []
        if let op = try next(&buffer, messages: &messages, limit: 1) { return op }
        return messages.first.map { .message($0) }
    }

    /// Decodes operations, appending messages to `messages` (the hot path: no per-message enum copies).
    /// Returns the first operation that is not a message, or nil when more bytes are needed or `limit`
    /// messages were appended.
    public mutating func next(
        _ buffer: inout ByteBuffer, messages: inout [NATSMessage], limit: Int = .max
    ) throws(ProtocolError) -> ServerOp? {
        var appended = 0
        while appended < limit {
            if pendingFrameLength > 0 {
                guard buffer.readableBytes >= pendingFrameLength else { return nil }
                pendingFrameLength = 0
            }
            let control = try buffer.withUnsafeReadableBytes { bytes throws(ProtocolError) -> Control in
                try Self.parseControl(bytes, maxControlLine: maxControlLineLength, maxInfoLine: maxInfoLineLength)
            }
            switch control {
            case .incomplete:
                return nil
            case .simple(let op, let consumed):
                buffer.moveReaderIndex(forwardBy: consumed)
                return op
            case .info(let json, let consumed):
                let json = buffer.getSlice(at: buffer.readerIndex + json.lowerBound, length: json.count)!
                buffer.moveReaderIndex(forwardBy: consumed)
                do {
                    return .info(try JSONDecoder().decode(ServerInfo.self, from: Data(json.readableBytesView)))
                } catch {
                    throw ProtocolError(.malformedInfo, "INFO does not decode: \(error)")
                }
            case .message(let subject, let sid, let replyTo, let headerLength, let totalLength, let lineLength):
                guard totalLength <= maxPayload else {
                    throw ProtocolError(.payloadTooLarge, "message of \(totalLength) bytes exceeds \(maxPayload)")
                }
                let frameLength = lineLength + totalLength + 2
                guard buffer.readableBytes >= frameLength else {
                    pendingFrameLength = frameLength
                    return nil
                }
                buffer.moveReaderIndex(forwardBy: lineLength)
                var headers: NATSHeaders?
                if headerLength > 0 {
                    headers = try NATSHeaders.parse(buffer.readSlice(length: headerLength)!)
                }
                let payload = buffer.readSlice(length: totalLength - headerLength)!
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                    throw ProtocolError(.malformedPayload, "payload of \(subject) not followed by CRLF")
                }
                messages.append(
                    NATSMessage(subject: subject, sid: sid, replyTo: replyTo, headers: headers, payload: payload))
                appended += 1
            }
        }
        return nil
    }

    enum Control {
        case incomplete
        case simple(ServerOp, consumed: Int)
        case info(json: Range<Int>, consumed: Int)
        case message(
            subject: String, sid: UInt64, replyTo: String?, headerLength: Int, totalLength: Int, lineLength: Int)
    }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 { b | 0x20 }

    static func parseControl(
        _ p: UnsafeRawBufferPointer, maxControlLine: Int, maxInfoLine: Int
    ) throws(ProtocolError) -> Control {
        guard let first = p.first else { return .incomplete }
        let isMessage = lower(first) == UInt8(ascii: "m") || lower(first) == UInt8(ascii: "h")
        let limit = isMessage ? maxControlLine : maxInfoLine
        guard let nl = p.prefix(limit + 2).firstIndex(of: 10) else {
            if p.count > limit + 1 {
                throw ProtocolError(.controlLineTooLong, "no line end within \(limit) bytes")
            }
            return .incomplete
        }
        let lineLength = nl + 1
        let end = nl > 0 && p[nl - 1] == 13 ? nl - 1 : nl

        switch lower(first) {
        case UInt8(ascii: "m"):
            try expectOp(p, "msg", end)
            var i = 3
            guard let a0 = nextArg(p, &i, end), let a1 = nextArg(p, &i, end), let a2 = nextArg(p, &i, end) else {
                throw malformed(p, end)
            }
            let a3 = nextArg(p, &i, end)
            guard nextArg(p, &i, end) == nil, let sid = decimal(p, a1) else { throw malformed(p, end) }
            let reply = a3 == nil ? nil : string(p, a2)
            guard let size = decimal(p, a3 ?? a2) else { throw malformed(p, end) }
            return .message(
                subject: string(p, a0), sid: sid, replyTo: reply, headerLength: 0, totalLength: Int(size),
                lineLength: lineLength)
        case UInt8(ascii: "h"):
            try expectOp(p, "hmsg", end)
            var i = 4
            guard let a0 = nextArg(p, &i, end), let a1 = nextArg(p, &i, end), let a2 = nextArg(p, &i, end),
                let a3 = nextArg(p, &i, end)
            else { throw malformed(p, end) }
            let a4 = nextArg(p, &i, end)
            guard nextArg(p, &i, end) == nil, let sid = decimal(p, a1) else { throw malformed(p, end) }
            let reply = a4 == nil ? nil : string(p, a2)
            guard let hdr = decimal(p, a4 == nil ? a2 : a3), let total = decimal(p, a4 ?? a3), hdr <= total,
                hdr > 0
            else { throw malformed(p, end) }
            return .message(
                subject: string(p, a0), sid: sid, replyTo: reply, headerLength: Int(hdr), totalLength: Int(total),
                lineLength: lineLength)
        case UInt8(ascii: "p"):
            // Not PING: PONG, or the error expectOp throws below.
            if (try? expectOp(p, "ping", end)) != nil { return .simple(.ping, consumed: lineLength) }
            try expectOp(p, "pong", end)
            return .simple(.pong, consumed: lineLength)
        case UInt8(ascii: "i"):
            try expectOp(p, "info", end)
            var start = 4
            while start < end && (p[start] == 32 || p[start] == 9) { start += 1 }
            return .info(json: start..<end, consumed: lineLength)
        case UInt8(ascii: "+"):
            guard end >= 3, matches(p, "+ok", 0) else { throw unknown(p, end) }
            return .simple(.ok, consumed: lineLength)
        case UInt8(ascii: "-"):
            guard end >= 4, matches(p, "-err", 0) else { throw unknown(p, end) }
            var text = Substring(string(p, 4..<end))
            while text.first == " " { text = text.dropFirst() }
            while text.last == " " { text = text.dropLast() }
            if text.count >= 2, text.first == "'", text.last == "'" { text = text.dropFirst().dropLast() }
            return .simple(.error(String(text)), consumed: lineLength)
        default:
            throw unknown(p, end)
        }
    }

    @inline(__always)
    static func nextArg(_ p: UnsafeRawBufferPointer, _ i: inout Int, _ end: Int) -> Range<Int>? {
        while i < end && (p[i] == 32 || p[i] == 9) { i += 1 }
        guard i < end else { return nil }
        let start = i
        while i < end && p[i] != 32 && p[i] != 9 { i += 1 }
        return start..<i
    }

    @inline(__always)
    static func decimal(_ p: UnsafeRawBufferPointer, _ r: Range<Int>) -> UInt64? {
        guard r.count <= 19 else { return nil }
        var v: UInt64 = 0
        for i in r {
            let d = p[i] &- 48
            guard d < 10 else { return nil }
            v = v * 10 + UInt64(d)
        }
        return v
    }

    @inline(__always)
    static func string(_ p: UnsafeRawBufferPointer, _ r: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: p[r]), as: UTF8.self)
    }

    static func matches(_ p: UnsafeRawBufferPointer, _ op: StaticString, _ at: Int) -> Bool {
        let n = op.utf8CodeUnitCount
        guard p.count >= at + n else { return false }
        let o = op.utf8Start
        for k in 0..<n where lower(p[at + k]) != o[k] { return false }
        return true
    }

    static func expectOp(_ p: UnsafeRawBufferPointer, _ op: StaticString, _ end: Int) throws(ProtocolError) {
        let n = op.utf8CodeUnitCount
        guard end >= n, matches(p, op, 0), end == n || p[n] == 32 || p[n] == 9 else { throw unknown(p, end) }
    }

    static func malformed(_ p: UnsafeRawBufferPointer, _ end: Int) -> ProtocolError {
        ProtocolError(.malformedOperation, "malformed operation: \(string(p, 0..<min(end, 128)))")
    }

    static func unknown(_ p: UnsafeRawBufferPointer, _ end: Int) -> ProtocolError {
        ProtocolError(.unknownOperation, "unknown operation: \(string(p, 0..<min(end, 64)))")
    }
}
