/// Where a tar stream's bytes come from (a file, a gzip stream, memory).
public protocol ByteSource {
    /// Reads up to `count` bytes; fewer (or none) only at the end.
    mutating func read(upTo count: Int) throws(OCIError) -> [UInt8]
}

/// Bytes already in memory.
public struct MemorySource: ByteSource {
    private var bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public mutating func read(upTo count: Int) throws(OCIError) -> [UInt8] {
        let end = min(bytes.count, offset + count)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }
}

/// One entry of a tar archive.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, directory, symlink, hardlink, characterDevice, blockDevice, fifo
        /// A type this reader does not apply (its flag).
        case other(UInt8)
    }

    /// As the archive names it (after pax and GNU long names).
    public var path: String
    public var kind: Kind
    /// Permission bits, with setuid, setgid and sticky.
    public var mode: UInt32
    public var size: Int
    /// A link's target.
    public var linkTarget: String
}

/// Reads a tar archive front to back (ustar, pax `path`/`linkpath`/`size`, GNU long names), without holding
/// more than a block and the entry's content chunk in memory.
public struct TarReader<Source: ByteSource> {
    private var source: Source
    /// Content bytes of the current entry not read yet, and its padding.
    private var unread = 0
    private var padding = 0

    public init(_ source: Source) { self.source = source }

    /// The next entry, or nil at the end of the archive. Skips what was not read of the one before.
    public mutating func next() throws(OCIError) -> TarEntry? {
        try skipRest()
        var pax: [String: String] = [:]
        var longName: String?
        var longLink: String?
        while true {
            let header = try readExactly(512, allowEnd: true)
            guard let header, !header.allSatisfy({ $0 == 0 }) else { return nil }
            try checkChecksum(header)
            let flag = header[156]
            let headerSize = try Self.number(header[124..<136], "size")
            switch flag {
            case UInt8(ascii: "x"):
                pax.merge(try Self.paxRecords(try readContent(headerSize)), uniquingKeysWith: { $1 })
                continue
            case UInt8(ascii: "g"):
                _ = try readContent(headerSize)  // global settings: nothing here needs them
                continue
            case UInt8(ascii: "L"):
                longName = Self.text(try readContent(headerSize)[...])
                continue
            case UInt8(ascii: "K"):
                longLink = Self.text(try readContent(headerSize)[...])
                continue
            default:
                break
            }
            // A pax size applies to the entry its header precedes, never to another extended header.
            var size = headerSize
            if let paxSize = pax["size"] {
                guard let parsed = Int(paxSize), parsed >= 0 else {
                    throw OCIError.badArchive("a pax size of \"\(paxSize)\"")
                }
                size = parsed
            }
            var name = Self.text(header[0..<100])
            // POSIX ustar ("ustar\0"); GNU's "ustar " keeps times, not a prefix, in those bytes.
            if header[257..<263].elementsEqual("ustar\0".utf8) {
                let prefix = Self.text(header[345..<500])
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            let kind: TarEntry.Kind =
                switch flag {
                case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): .file
                case UInt8(ascii: "1"): .hardlink
                case UInt8(ascii: "2"): .symlink
                case UInt8(ascii: "3"): .characterDevice
                case UInt8(ascii: "4"): .blockDevice
                case UInt8(ascii: "5"): .directory
                case UInt8(ascii: "6"): .fifo
                default: .other(flag)
                }
            // Only files (and types this reader does not know) carry content; links, directories and devices
            // have none, whatever their size field says.
            let carriesContent = kind == .file || kind == .other(flag)
            let entry = TarEntry(
                path: pax["path"] ?? longName ?? name, kind: kind,
                mode: UInt32(truncatingIfNeeded: try Self.number(header[100..<108], "mode")),
                size: carriesContent ? size : 0,
                linkTarget: pax["linkpath"] ?? longLink ?? Self.text(header[157..<257]))
            unread = entry.size
            padding = (512 - entry.size % 512) % 512
            return entry
        }
    }

    /// Reads up to `count` bytes of the current entry's content (none once it is all read).
    public mutating func readContent(upTo count: Int) throws(OCIError) -> [UInt8] {
        guard unread > 0 else { return [] }
        let want = min(count, unread)
        guard let bytes = try readExactly(want, allowEnd: false) else { return [] }
        unread -= bytes.count
        return bytes
    }

    private mutating func readContent(_ size: Int) throws(OCIError) -> [UInt8] {
        guard size <= 1 << 20 else { throw OCIError.badArchive("a header record of \(size) bytes") }
        let bytes = size == 0 ? [] : try readExactly(size, allowEnd: false) ?? []
        _ = try readExactly((512 - size % 512) % 512, allowEnd: false)
        return bytes
    }

    private mutating func skipRest() throws(OCIError) {
        while unread > 0 {
            let chunk = try readContent(upTo: 64 << 10)
            if chunk.isEmpty { break }
        }
        if padding > 0 { _ = try readExactly(padding, allowEnd: false) }
        padding = 0
    }

    /// Exactly `count` bytes; nil at a clean end when `allowEnd`.
    private mutating func readExactly(_ count: Int, allowEnd: Bool) throws(OCIError) -> [UInt8]? {
        guard count > 0 else { return [] }
        var out: [UInt8] = []
        while out.count < count {
            let chunk = try source.read(upTo: count - out.count)
            if chunk.isEmpty {
                if out.isEmpty, allowEnd { return nil }
                throw OCIError.badArchive("it ends in the middle of an entry")
            }
            out += chunk
        }
        return out
    }

    private func checkChecksum(_ header: [UInt8]) throws(OCIError) {
        let stored = try Self.number(header[148..<156], "checksum")
        var sum = 0
        for (i, byte) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(byte) }
        guard sum == stored else { throw OCIError.badArchive("a header checksum does not match") }
    }

    /// An octal field (NUL or space terminated), or GNU's base-256 for big numbers.
    static func number(_ field: ArraySlice<UInt8>, _ what: String) throws(OCIError) -> Int {
        if let first = field.first, first & 0x80 != 0 {
            guard first & 0x40 == 0 else { throw OCIError.badArchive("a negative \(what)") }
            var value = Int(first & 0x3f)
            for byte in field.dropFirst() {
                guard value < Int.max >> 8 else { throw OCIError.badArchive("a \(what) too large") }
                value = value << 8 | Int(byte)
            }
            return value
        }
        var value = 0
        var seen = false
        for byte in field {
            if byte == 0 || byte == 32 {
                if seen { break } else { continue }
            }
            guard (48...55).contains(byte), value < Int.max >> 3 else {
                throw OCIError.badArchive("a \(what) field that is not octal")
            }
            value = value << 3 | Int(byte - 48)
            seen = true
        }
        return value
    }

    /// A NUL-terminated field as text.
    static func text(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// `LENGTH KEY=VALUE\n` records.
    static func paxRecords(_ bytes: [UInt8]) throws(OCIError) -> [String: String] {
        var records: [String: String] = [:]
        var rest = bytes[...]
        while !rest.isEmpty {
            guard let space = rest.firstIndex(of: 32),
                let length = Int(String(decoding: rest[rest.startIndex..<space], as: UTF8.self)),
                length >= space - rest.startIndex + 2, length <= rest.count,
                rest[rest.startIndex + length - 1] == 10  // a newline ends every record
            else { throw OCIError.badArchive("a pax record that cannot be read") }
            let record = rest[(space + 1)..<(rest.startIndex + length - 1)]  // without the newline
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[..<equals], as: UTF8.self)
                let value = record[(equals + 1)...]
                if key == "path" || key == "linkpath", value.contains(0) {
                    throw OCIError.badArchive("a pax \(key) that holds a NUL byte")
                }
                records[key] = String(decoding: value, as: UTF8.self)
            }
            rest = rest[(rest.startIndex + length)...]
        }
        return records
    }
}
