/// Builds tar archives by hand, hostile ones included, for the unpacker's tests.
struct TarBuilder {
    private(set) var bytes: [UInt8] = []

    enum Kind: UInt8 {
        case file = 48  // "0"
        case hardlink = 49
        case symlink = 50
        case characterDevice = 51
        case directory = 53
        case fifo = 54
        case pax = 120  // "x"
        case gnuLongName = 76  // "L"
    }

    mutating func add(
        _ path: String, _ kind: Kind = .file, content: [UInt8] = [], mode: UInt32 = 0o644, link: String = ""
    ) {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, _ length: Int) {
            for (i, byte) in text.utf8.prefix(length).enumerated() { header[offset + i] = byte }
        }
        func octal(_ value: Int, at offset: Int, _ length: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, length - 1 - digits.count)) + digits, at: offset, length - 1)
        }
        put(path, at: 0, 100)
        octal(Int(mode), at: 100, 8)
        octal(0, at: 108, 8)
        octal(0, at: 116, 8)
        octal(content.count, at: 124, 12)
        octal(0, at: 136, 12)
        header[156] = kind.rawValue
        put(link, at: 157, 100)
        put("ustar", at: 257, 6)
        put("00", at: 263, 2)
        for i in 148..<156 { header[i] = 32 }
        let sum = header.reduce(0) { $0 + Int($1) }
        octal(sum, at: 148, 7)
        bytes += header
        bytes += content
        bytes += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    }

    /// A pax header giving the next entry a long path.
    mutating func paxPath(_ path: String) { paxRecord("path", path) }

    /// A pax header with one record.
    mutating func paxRecord(_ key: String, _ value: String) {
        var record = " \(key)=\(value)\n"
        var length = record.utf8.count
        length += String(length).count
        if String(length).count != String(length - String(length).count).count { length += 1 }
        record = "\(length)" + record
        add("pax", .pax, content: Array(record.utf8))
    }

    func finished() -> [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }
}
