import Foundation
import NexControlClient
import NexModels

/// Printing helpers shared by the commands.
enum Output {
    /// Prints a progress line and flushes, so it shows at once even when stdout is a pipe.
    static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    /// A notice for the person at the terminal (key reuse, what is being followed): on standard error, so
    /// standard output stays data.
    static func notice(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// JSON, pretty by default; `compact`: one line (for streams and scripts).
    static func json<T: Encodable>(_ value: T, compact: Bool = false) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting =
            compact ? [.sortedKeys, .withoutEscapingSlashes] : [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return String(decoding: try e.encode(value), as: UTF8.self)
    }

    /// A local wall-clock time with milliseconds, `15:04:05.123`.
    static func clock(_ date: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss.SSS"
        return f.string(from: date)
    }

    /// Bytes as a person reads them: `512 B`, `65.4 MiB`, `23.5 GiB`.
    static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    /// A left-aligned table with a header row.
    static func table(_ header: [String], _ rows: [[String]], indent: String = "") -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in
            indent
                + row.enumerated().map { i, cell in
                    i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// Runs a control call, turning the client's errors into one-line CLI errors (refusals verbatim).
    static func refusalsAsErrors<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as NexError { throw CLIError(e.message) }
    }
}
