/// A W3C Trace Context `traceparent` (version 00): the trace a message belongs to and the span that sent it.
///
/// NATS carries it as a message header, so a trace crosses publish, request and reply:
/// `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.
public struct TraceParent: Sendable, Hashable, CustomStringConvertible {
    /// 16 bytes as 32 lowercase hex digits, not all zero.
    public var traceID: String
    /// 8 bytes as 16 lowercase hex digits, not all zero: the span that sent the message.
    public var parentSpanID: String
    /// Bit 0: sampled.
    public var flags: UInt8

    /// The header that carries it.
    public static let headerName = "traceparent"

    /// A trace parent, or nil when an id is not lowercase hex of the right length or is all zeros.
    public init?(traceID: String, parentSpanID: String, sampled: Bool = true) {
        guard Self.isID(traceID, length: 32), Self.isID(parentSpanID, length: 16) else { return nil }
        self.traceID = traceID
        self.parentSpanID = parentSpanID
        self.flags = sampled ? 1 : 0
    }

    /// Parses a header value; nil for anything the W3C parsing rules reject (a version other than 00 is read
    /// by its first four fields, as the specification asks of future versions).
    public init?(header: String) {
        let fields = header.trimmingWhitespace().split(separator: "-", omittingEmptySubsequences: false)
        guard fields.count >= 4, fields[0].count == 2, Self.isHex(fields[0]), fields[0] != "ff" else { return nil }
        if fields[0] == "00", fields.count != 4 { return nil }
        guard fields[3].count == 2, Self.isHex(fields[3]), let flags = UInt8(fields[3], radix: 16) else { return nil }
        guard Self.isID(fields[1], length: 32), Self.isID(fields[2], length: 16) else { return nil }
        self.traceID = String(fields[1])
        self.parentSpanID = String(fields[2])
        self.flags = flags
    }

    /// Whether the sender recorded its span.
    public var sampled: Bool { flags & 1 == 1 }

    /// The header value.
    public var description: String {
        let hex = Array("0123456789abcdef")
        return "00-\(traceID)-\(parentSpanID)-\(hex[Int(flags >> 4)])\(hex[Int(flags & 0xF)])"
    }

    private static func isHex(_ text: some StringProtocol) -> Bool {
        text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    private static func isID(_ text: some StringProtocol, length: Int) -> Bool {
        text.utf8.count == length && isHex(text) && text.utf8.contains { $0 != 48 }
    }
}

extension NATSHeaders {
    /// The message's W3C `traceparent`, when it has a valid one; setting nil removes it.
    public var traceParent: TraceParent? {
        get {
            // Exact name first; a `Traceparent` from an HTTP-style carrier counts too.
            let value =
                self[TraceParent.headerName]
                ?? first { $0.name.lowercased() == TraceParent.headerName }?.value
            return value.flatMap(TraceParent.init(header:))
        }
        set {
            remove(TraceParent.headerName)
            if let newValue { append(TraceParent.headerName, newValue.description) }
        }
    }
}

extension StringProtocol {
    fileprivate func trimmingWhitespace() -> Substring {
        let s = Substring(self)
        let start = s.firstIndex { $0 != " " && $0 != "\t" } ?? s.endIndex
        let end = s.lastIndex { $0 != " " && $0 != "\t" }.map { s.index(after: $0) } ?? start
        return s[start..<Swift.max(start, end)]
    }
}
