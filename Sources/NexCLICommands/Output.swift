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

    static func json<T: Encodable>(_ value: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
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
