import Foundation
import NKeys
import NexModels

/// A host call's arguments: the JSON array the agent sent. Byte values travel as `{"$bytes": [..]}`, read
/// straight into bytes (a megabyte of them is a megabyte of numbers: no value per number).
struct HostCallArguments: Sendable {
    /// One argument: bytes, or any other JSON value.
    enum Argument: Decodable, Sendable, Equatable {
        case bytes([UInt8])
        case value(JSONValue)

        private struct Bytes: Decodable {
            var bytes: [UInt8]
            enum CodingKeys: String, CodingKey { case bytes = "$bytes" }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let bytes = try? container.decode(Bytes.self) {  // not bytes: any other value, read next
                self = .bytes(bytes.bytes)
            } else {
                self = .value(try container.decode(JSONValue.self))
            }
        }
    }

    let arguments: [Argument]

    /// Reads `json`, which must be a JSON array.
    init(json: [UInt8]) throws {
        do { arguments = try JSONDecoder().decode([Argument].self, from: Data(json)) } catch {
            throw NexError(.invalidRequest, "arguments must be a JSON array: \(error)")
        }
    }

    init(_ arguments: [Argument]) { self.arguments = arguments }

    /// The JSON value at `index`, nil when the call has fewer arguments or it is bytes.
    subscript(index: Int) -> JSONValue? {
        guard index < arguments.count, case .value(let value) = arguments[index] else { return nil }
        return value
    }

    /// The string at `index`; `what` names it in the error.
    func string(_ index: Int, _ what: String) throws -> String {
        guard let text = self[index]?.stringValue else { throw NexError(.invalidRequest, "\(what) must be a string") }
        return text
    }

    /// Bytes from `{"$bytes": [...]}`, a string (UTF-8), nothing (missing or null), or any other JSON value
    /// (as JSON text, keys sorted).
    func bytes(_ index: Int) throws -> [UInt8] {
        guard index < arguments.count else { return [] }
        switch arguments[index] {
        case .bytes(let bytes): return bytes
        case .value(.null): return []
        case .value(.string(let text)): return Array(text.utf8)
        case .value(let value):
            if value["$bytes"] != nil { throw NexError(.invalidRequest, "$bytes must hold numbers from 0 to 255") }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return Array(try encoder.encode(value))
        }
    }
}

/// What a host call answers, encoded as the agent reads it (bytes as `{"$bytes": [..]}`).
indirect enum HostCallResult: Encodable, Sendable, Equatable {
    case null
    case bytes([UInt8])
    case strings([String])
    case list([HostCallResult])
    case object(ObjectSummary)
    case objects([ObjectSummary])
    case http(HTTPAnswer)

    /// An object in a workload's object store.
    struct ObjectSummary: Codable, Sendable, Equatable {
        var name: String
        var size: Int
    }

    /// The http service's answer: the body as UTF-8 text, header names in lower case.
    struct HTTPAnswer: Codable, Sendable, Equatable {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    private struct Bytes: Encodable {
        var bytes: [UInt8]
        enum CodingKeys: String, CodingKey { case bytes = "$bytes" }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bytes(let bytes): try container.encode(Bytes(bytes: bytes))
        case .strings(let strings): try container.encode(strings)
        case .list(let items): try container.encode(items)
        case .object(let object): try container.encode(object)
        case .objects(let objects): try container.encode(objects)
        case .http(let answer): try container.encode(answer)
        }
    }

    /// The JSON the agent receives.
    func json() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self))
    }
}
