public import NIOCore

/// NATS message headers: an ordered, multi-valued, case-preserving list of `name: value` pairs, plus the
/// optional status line of server-generated messages (`NATS/1.0 503`, `NATS/1.0 408 Request Timeout`).
///
/// Lookups match names exactly, as the NATS clients do since header names became case-preserving.
public struct NATSHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    /// One header line.
    public struct Entry: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    private var entries: [Entry] = []
    /// The status code of the status line (e.g. 503 no responders, 408 timeout, 409 conflict, 100 heartbeat).
    public var status: Int?
    /// The description after the status code, if any.
    public var statusDescription: String?

    /// Creates empty headers.
    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { append(name, value) }
    }

    /// True when there are no header lines and no status.
    public var isEmpty: Bool { entries.isEmpty && status == nil }

    /// The first value for `name`, or nil. Setting replaces every value of `name`; nil removes them.
    public subscript(name: String) -> String? {
        get { entries.first { $0.name == name }?.value }
        set {
            entries.removeAll { $0.name == name }
            if let newValue { entries.append(Entry(name: name, value: newValue)) }
        }
    }

    /// Every value for `name`, in order.
    public func values(for name: String) -> [String] {
        entries.filter { $0.name == name }.map(\.value)
    }

    /// Adds a value, keeping the values already there.
    public mutating func append(_ name: String, _ value: String) {
        entries.append(Entry(name: name, value: value))
    }

    /// Removes every value for `name`.
    public mutating func remove(_ name: String) {
        entries.removeAll { $0.name == name }
    }

    public func makeIterator() -> IndexingIterator<[Entry]> { entries.makeIterator() }

    /// Checks that names and values can be written on the wire.
    public func validate() throws(ProtocolError) {
        for e in entries {
            guard !e.name.isEmpty,
                e.name.utf8.allSatisfy({ $0 > 32 && $0 < 127 && $0 != UInt8(ascii: ":") })
            else { throw ProtocolError(.malformedHeaders, "invalid header name \"\(e.name)\"") }
            guard !e.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) else {
                throw ProtocolError(.malformedHeaders, "header \(e.name) has a line break in its value")
            }
        }
    }

    /// Writes the header block (status line, lines, blank line) and returns its length.
    @discardableResult
    public func write(into buffer: inout ByteBuffer) -> Int {
        var n = buffer.writeStaticString("NATS/1.0")
        if let status {
            n += buffer.writeString(" \(status)")
            if let statusDescription, !statusDescription.isEmpty { n += buffer.writeString(" \(statusDescription)") }
        }
        n += buffer.writeStaticString("\r\n")
        for e in entries {
            n += buffer.writeString(e.name)
            n += buffer.writeStaticString(": ")
            n += buffer.writeString(e.value)
            n += buffer.writeStaticString("\r\n")
        }
        n += buffer.writeStaticString("\r\n")
        return n
    }

    /// Parses a header block as carried by HMSG.
    public static func parse(_ block: ByteBuffer) throws(ProtocolError) -> NATSHeaders {
        var headers = NATSHeaders()
        let lines = block.readableBytesView.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        guard let first = lines.first, first.starts(with: "NATS/1.0".utf8) else {
            throw ProtocolError(.malformedHeaders, "header block does not start with NATS/1.0")
        }
        let statusPart = trimmed(first.dropFirst(8))
        if !statusPart.isEmpty {
            let digits = statusPart.prefix { $0 >= 48 && $0 <= 57 }
            guard digits.count == 3, let code = Int(String(decoding: digits, as: UTF8.self)) else {
                throw ProtocolError(.malformedHeaders, "bad status line")
            }
            headers.status = code
            let rest = trimmed(statusPart.dropFirst(3))
            if !rest.isEmpty { headers.statusDescription = String(decoding: rest, as: UTF8.self) }
        }
        for line in lines.dropFirst() {
            let content = trimmed(line)
            if content.isEmpty { continue }
            guard let colon = content.firstIndex(of: UInt8(ascii: ":")), colon != content.startIndex else {
                throw ProtocolError(.malformedHeaders, "header line without a name")
            }
            let name = String(decoding: content[..<colon], as: UTF8.self)
            let value = String(decoding: trimmed(content[content.index(after: colon)...]), as: UTF8.self)
            headers.append(name, value)
        }
        return headers
    }

    private static func trimmed(_ s: ByteBufferView.SubSequence) -> ByteBufferView.SubSequence {
        var s = s
        while let f = s.first, f == 32 || f == 9 || f == 13 { s = s.dropFirst() }
        while let l = s.last, l == 32 || l == 9 || l == 13 { s = s.dropLast() }
        return s
    }
}
