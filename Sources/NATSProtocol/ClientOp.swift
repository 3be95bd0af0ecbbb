public import NIOCore

/// Writes client operations (PUB, HPUB, SUB, UNSUB, CONNECT, PING, PONG) into a `ByteBuffer`.
public enum ClientOp {
    /// Writes `PUB subject [reply] size` or, with headers, `HPUB subject [reply] hsize tsize`, then the payload.
    /// An empty `replyTo` is no reply subject.
    public static func writePublish(
        subject: String, replyTo: String?, headers: NATSHeaders?, payload: UnsafeRawBufferPointer,
        into buffer: inout ByteBuffer
    ) {
        let replyTo = replyTo?.isEmpty == false ? replyTo : nil
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
        // The strings are read in place: native strings (nearly all) are contiguous UTF-8 already, while a
        // mutable copy for `withUTF8` would retain and release each of them per message.
        let written = subject.utf8.withContiguousStorageIfAvailable { s -> Bool in
            guard let replyTo else {
                writePub(subject: UnsafeRawBufferPointer(s), replyTo: nil, payload: payload, into: &buffer)
                return true
            }
            return replyTo.utf8.withContiguousStorageIfAvailable { r in
                writePub(
                    subject: UnsafeRawBufferPointer(s), replyTo: UnsafeRawBufferPointer(r), payload: payload,
                    into: &buffer)
                return true
            } ?? false
        }
        guard written != true else { return }
        // A bridged or otherwise non-contiguous string: copied once.
        let s = Array(subject.utf8)
        let r = replyTo.map { Array($0.utf8) }
        s.withUnsafeBytes { s in
            guard let r else { return writePub(subject: s, replyTo: nil, payload: payload, into: &buffer) }
            r.withUnsafeBytes { r in writePub(subject: s, replyTo: r, payload: payload, into: &buffer) }
        }
    }

    @inline(__always)
    private static func writePub(
        subject: UnsafeRawBufferPointer, replyTo: UnsafeRawBufferPointer?, payload: UnsafeRawBufferPointer,
        into buffer: inout ByteBuffer
    ) {
        let digits = decimalDigits(payload.count)
        let replyLength = replyTo.map { $0.count + 1 } ?? 0
        let total = 4 + subject.count + 1 + replyLength + digits + 2 + payload.count + 2
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            let start = out.baseAddress!
            var p = start
            p.storeBytes(of: UInt8(ascii: "P"), as: UInt8.self)
            (p + 1).storeBytes(of: UInt8(ascii: "U"), as: UInt8.self)
            (p + 2).storeBytes(of: UInt8(ascii: "B"), as: UInt8.self)
            (p + 3).storeBytes(of: UInt8(ascii: " "), as: UInt8.self)
            p += 4
            p = append(subject, at: p)
            p.storeBytes(of: UInt8(ascii: " "), as: UInt8.self)
            p += 1
            if let replyTo {
                p = append(replyTo, at: p)
                p.storeBytes(of: UInt8(ascii: " "), as: UInt8.self)
                p += 1
            }
            var v = payload.count
            for k in stride(from: digits - 1, through: 0, by: -1) {
                (p + k).storeBytes(of: UInt8(truncatingIfNeeded: 48 + v % 10), as: UInt8.self)
                v /= 10
            }
            p += digits
            p.storeBytes(of: 13, as: UInt8.self)
            (p + 1).storeBytes(of: 10, as: UInt8.self)
            p = append(payload, at: p + 2)
            p.storeBytes(of: 13, as: UInt8.self)
            (p + 1).storeBytes(of: 10, as: UInt8.self)
            return p + 2 - start
        }
    }

    @inline(__always)
    private static func append(_ bytes: UnsafeRawBufferPointer, at p: UnsafeMutableRawPointer)
        -> UnsafeMutableRawPointer
    {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return p }
        p.copyMemory(from: base, byteCount: bytes.count)
        return p + bytes.count
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
