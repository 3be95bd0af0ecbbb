import Foundation
public import Logging
import NKeys

/// Where a node's own log lines go (`nex node up --logger std|file|nats`, repeatable), as Nex ships them:
/// every destination has an output stream and an error stream; warnings and worse go to the error one.
public protocol NodeLogSink: Sendable {
    /// Writes one rendered line (no newline); `isError` for warnings and worse.
    func write(_ line: String, isError: Bool)
}

/// A `swift-log` handler that renders each record once (text or JSON lines) and hands it to every sink.
public struct NodeLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let json: Bool
    let sinks: [any NodeLogSink]

    /// A handler for `label` writing to `sinks`, as JSON lines when `json` (`--logjson`).
    public init(label: String, level: Logger.Level, json: Bool, sinks: [any NodeLogSink]) {
        self.label = label
        self.logLevel = level
        self.json = json
        self.sinks = sinks
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        let line =
            json
            ? NodeLogLine.json(level: event.level, label: label, message: "\(event.message)", metadata: merged)
            : NodeLogLine.text(level: event.level, label: label, message: "\(event.message)", metadata: merged)
        let isError = event.level >= .warning
        for sink in sinks { sink.write(line, isError: isError) }
    }
}

/// How a record reads as one line.
enum NodeLogLine {
    static func timestamp(_ date: Date = Date()) -> String {
        date.formatted(
            .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    /// `2026-12-03T18:40:06.123Z info nex.node: node started nex.node=N…`
    static func text(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var line = "\(timestamp()) \(level) \(label): \(message)"
        for key in metadata.keys.sorted() { line += " \(key)=\(metadata[key]!)" }
        return line
    }

    /// `{"time":"…","level":"info","logger":"nex.node","msg":"node started","nex.node":"N…"}`: one object a
    /// line, metadata as top-level keys (nested values as JSON).
    static func json(level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var object: [String: JSONValue] = [
            "time": .string(timestamp()), "level": .string("\(level)"), "logger": .string(label),
            "msg": .string(message),
        ]
        for (key, value) in metadata where object[key] == nil { object[key] = plain(value) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return String(decoding: try encoder.encode(object), as: UTF8.self) } catch {
            return #"{"level":"error","msg":"a log record could not be encoded"}"#
        }
    }

    private static func plain(_ value: Logger.Metadata.Value) -> JSONValue {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string("\(c)")
        case .array(let a): .array(a.map(plain))
        case .dictionary(let d): .object(d.sorted { $0.key < $1.key }.map { ($0.key, plain($0.value)) })
        }
    }
}
