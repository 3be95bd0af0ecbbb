public import NIOCore

/// Writes client operations (PUB, HPUB, SUB, UNSUB, CONNECT, PING, PONG) into a `ByteBuffer`.
public enum ClientOp {
    /// Writes `PUB subject [reply] size` or, with headers, `HPUB subject [reply] hsize tsize`, then the payload.
    public static func writePublish(
        subject: String, replyTo: String?, headers: NATSHeaders?, payload: UnsafeRawBufferPointer,
        into buffer: inout ByteBuffer
    ) {
        guard let headers else {
            writePub(subject: subject, replyTo: replyTo, payload: payload, into: &buffer)
            return
        }
        let headerLength = headers.encodedLength
        buffer.writeStaticString("HPUB ")
        buffer.writeString(subject)
        buffer.writeInteger(UInt8(ascii: " "))
        if let replyTo {
            buffer.writeString(replyTo)
            buffer.writeInteger(UInt8(ascii: " "))
        }
        buffer.writeDecimal(headerLength)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeDecimal(headerLength + payload.count)
        buffer.writeStaticString("\r\n")
        headers.write(into: &buffer)
        buffer.writeBytes(payload)
        buffer.writeStaticString("\r\n")
    }

    /// `PUB` as one raw write: one capacity check per message instead of one per field (the hot path).
    static func writePub(
        subject: String, replyTo: String?, payload: UnsafeRawBufferPointer, into buffer: inout ByteBuffer
    ) {
        var subject = subject
        var replyTo = replyTo ?? ""
        let digits = decimalDigits(payload.count)
        subject.withUTF8 { s in
            replyTo.withUTF8 { r in
                let total = 4 + s.count + 1 + (r.isEmpty ? 0 : r.count + 1) + digits + 2 + payload.count + 2
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
                    var i = 0
                    func put(_ bytes: UnsafeRawBufferPointer) {
                        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
                        (out.baseAddress! + i).copyMemory(from: base, byteCount: bytes.count)
                        i += bytes.count
                    }
                    out[0] = UInt8(ascii: "P")
                    out[1] = UInt8(ascii: "U")
                    out[2] = UInt8(ascii: "B")
                    out[3] = UInt8(ascii: " ")
                    i = 4
                    put(UnsafeRawBufferPointer(s))
                    out[i] = UInt8(ascii: " ")
                    i += 1
                    if !r.isEmpty {
                        put(UnsafeRawBufferPointer(r))
                        out[i] = UInt8(ascii: " ")
                        i += 1
                    }
                    var v = payload.count
                    for k in stride(from: i + digits - 1, through: i, by: -1) {
                        out[k] = UInt8(truncatingIfNeeded: 48 + v % 10)
                        v /= 10
                    }
                    i += digits
                    out[i] = 13
                    out[i + 1] = 10
                    i += 2
                    put(payload)
                    out[i] = 13
                    out[i + 1] = 10
                    return i + 2
                }
            }
        }
    }

    @inline(__always)
    static func decimalDigits(_ value: Int) -> Int {
        var n = 1
        var v = value
        while v >= 10 {
            n += 1
            v /= 10
        }
        return n
    }

    /// Writes `SUB subject [queue] sid`.
    public static func writeSubscribe(subject: String, queue: String?, sid: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("SUB ")
        buffer.writeString(subject)
        buffer.writeInteger(UInt8(ascii: " "))
        if let queue {
            buffer.writeString(queue)
            buffer.writeInteger(UInt8(ascii: " "))
        }
        buffer.writeDecimal(Int(sid))
        buffer.writeStaticString("\r\n")
    }

    /// Writes `UNSUB sid [max]`.
    public static func writeUnsubscribe(sid: UInt64, max: Int?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("UNSUB ")
        buffer.writeDecimal(Int(sid))
        if let max {
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeDecimal(max)
        }
        buffer.writeStaticString("\r\n")
    }

    /// Writes `CONNECT {json}`.
    public static func writeConnect(_ json: String, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("CONNECT ")
        buffer.writeString(json)
        buffer.writeStaticString("\r\n")
    }

    /// Writes `PING`.
    public static func writePing(into buffer: inout ByteBuffer) { buffer.writeStaticString("PING\r\n") }

    /// Writes `PONG`.
    public static func writePong(into buffer: inout ByteBuffer) { buffer.writeStaticString("PONG\r\n") }
}

extension NATSHeaders {
    /// The length of the header block as ``write(into:)`` writes it.
    public var encodedLength: Int {
        var n = 8 + 2 + 2  // "NATS/1.0", its CRLF, the closing CRLF
        if let status {
            n += 1 + String(status).utf8.count
            if let statusDescription, !statusDescription.isEmpty { n += 1 + statusDescription.utf8.count }
        }
        for e in self { n += e.name.utf8.count + 2 + e.value.utf8.count + 2 }
        return n
    }
}

extension ByteBuffer {
    /// Writes a non-negative integer in decimal ASCII without allocating.
    @inlinable
    public mutating func writeDecimal(_ value: Int) {
        precondition(value >= 0, "negative length")
        if value < 10 {
            writeInteger(UInt8(truncatingIfNeeded: 48 + value))
            return
        }
        var digits = 0
        var v = value
        while v > 0 {
            digits += 1
            v /= 10
        }
        writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { out in
            var v = value
            var i = digits - 1
            while i >= 0 {
                out[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
                v /= 10
                i -= 1
            }
            return digits
        }
    }
}
