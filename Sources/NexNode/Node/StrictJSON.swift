/// A strict check of JSON text (RFC 8259) before it is decoded: Foundation's decoder takes trailing commas and
/// names no place. A failure says the line and column, and what was expected there.
enum StrictJSON {
    /// Where the text stops being JSON, and why.
    struct Failure: Error, CustomStringConvertible {
        var line: Int
        var column: Int
        var reason: String
        var description: String { "line \(line), column \(column): \(reason)" }
    }

    /// Throws at the first place `bytes` is not one JSON value (objects with duplicate keys included).
    /// Returns the numbers written with a fraction or an exponent, by key path (`a.b[2]`): Foundation's decoder
    /// reports one given for a whole number as "not valid JSON", naming no key.
    @discardableResult
    static func check(_ bytes: [UInt8]) throws(Failure) -> [(path: String, text: String)] {
        var scanner = Scanner(bytes: bytes)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { scanner.index = 3 }  // a UTF-8 byte order mark
        scanner.skipSpace()
        try scanner.value(depth: 0)
        scanner.skipSpace()
        if scanner.index < bytes.count { throw scanner.failure("more text after the JSON value") }
        return scanner.fractional
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0
        /// Where the scanner is: object keys and array indexes.
        var path: [String] = []
        var fractional: [(path: String, text: String)] = []

        var pathText: String {
            path.reduce(into: "") { text, part in
                text += part.hasPrefix("[") || text.isEmpty ? part : "." + part
            }
        }

        func failure(_ reason: String, at position: Int? = nil) -> Failure {
            let end = min(position ?? index, bytes.count)
            var line = 1
            var lineStart = 0
            for i in 0..<end where bytes[i] == UInt8(ascii: "\n") {
                line += 1
                lineStart = i + 1
            }
            // Columns count characters, not bytes: UTF-8 continuation bytes are not counted.
            let column = bytes[lineStart..<end].filter { $0 & 0xC0 != 0x80 }.count + 1
            return Failure(line: line, column: column, reason: reason)
        }

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let c = current, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { index += 1 }
        }

        mutating func value(depth: Int) throws(Failure) {
            guard depth < 512 else { throw failure("nested too deeply") }
            guard let c = current else { throw failure("the text ends where a value was expected") }
            switch c {
            case UInt8(ascii: "{"): try object(depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw failure("a value was expected (an object, array, string, number, true, false or null)")
            }
        }

        mutating func literal(_ word: String) throws(Failure) {
            let expected = Array(word.utf8)
            guard bytes.count - index >= expected.count, Array(bytes[index..<index + expected.count]) == expected else {
                throw failure("a value was expected (strings need double quotes)")
            }
            index += expected.count
        }

        mutating func object(depth: Int) throws(Failure) {
            index += 1
            skipSpace()
            if current == UInt8(ascii: "}") {
                index += 1
                return
            }
            var keys: Set<[UInt8]> = []
            while true {
                guard current == UInt8(ascii: "\"") else {
                    throw failure("a key in double quotes was expected")
                }
                let start = index
                let key = try string()
                guard keys.insert(key).inserted else {
                    throw failure("the key \(String(decoding: key, as: UTF8.self)) appears twice", at: start)
                }
                skipSpace()
                guard current == UInt8(ascii: ":") else { throw failure("a colon after the key was expected") }
                index += 1
                skipSpace()
                path.append(String(decoding: key, as: UTF8.self))
                try value(depth: depth + 1)
                path.removeLast()
                skipSpace()
                if current == UInt8(ascii: "}") {
                    index += 1
                    return
                }
                guard current == UInt8(ascii: ",") else { throw failure("a comma or } was expected") }
                let comma = index
                index += 1
                skipSpace()
                if current == UInt8(ascii: "}") { throw failure("a trailing comma (remove it)", at: comma) }
            }
        }

        mutating func array(depth: Int) throws(Failure) {
            index += 1
            skipSpace()
            if current == UInt8(ascii: "]") {
                index += 1
                return
            }
            var element = 0
            while true {
                path.append("[\(element)]")
                try value(depth: depth + 1)
                path.removeLast()
                element += 1
                skipSpace()
                if current == UInt8(ascii: "]") {
                    index += 1
                    return
                }
                guard current == UInt8(ascii: ",") else { throw failure("a comma or ] was expected") }
                let comma = index
                index += 1
                skipSpace()
                if current == UInt8(ascii: "]") { throw failure("a trailing comma (remove it)", at: comma) }
            }
        }

        /// A string; returns its raw bytes (escapes as written, enough to tell keys apart).
        mutating func string() throws(Failure) -> [UInt8] {
            let start = index
            index += 1
            while let c = current {
                switch c {
                case UInt8(ascii: "\""):
                    index += 1
                    return Array(bytes[start + 1..<index - 1])
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let e = current else { break }
                    if e == UInt8(ascii: "u") {
                        let hex = bytes[min(index + 1, bytes.count)..<min(index + 5, bytes.count)]
                        guard hex.count == 4, hex.allSatisfy({ Self.isHex($0) }) else {
                            throw failure("\\u takes four hex digits")
                        }
                        index += 5
                    } else {
                        guard Array("\"\\/bfnrt".utf8).contains(e) else {
                            throw failure("an unknown escape \\\(Character(UnicodeScalar(e)))")
                        }
                        index += 1
                    }
                case 0..<0x20:
                    throw failure("a control character in a string (write \\n or \\t)")
                default:
                    index += 1
                }
            }
            throw failure("a string is not closed", at: start)
        }

        static func isHex(_ c: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c)
                || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(c)
        }

        mutating func number() throws(Failure) {
            let start = index
            defer {
                let text = String(decoding: bytes[start..<index], as: UTF8.self)
                if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
                    fractional.append((pathText, text))
                }
            }
            func digits() -> Int {
                let start = index
                while let c = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) { index += 1 }
                return index - start
            }
            if current == UInt8(ascii: "-") { index += 1 }
            if current == UInt8(ascii: "0") {
                index += 1
                if let c = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) {
                    throw failure("a number may not start with 0")
                }
            } else if digits() == 0 {
                throw failure("a digit was expected")
            }
            if current == UInt8(ascii: ".") {
                index += 1
                guard digits() > 0 else { throw failure("a digit after the decimal point was expected") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { throw failure("a digit in the exponent was expected") }
            }
        }
    }
}
