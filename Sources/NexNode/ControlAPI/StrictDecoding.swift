/// A coding key for any name, to list what a JSON object really contains.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Throws when the object has a key outside `known`, naming the key and where it is.
    func rejectUnknownKeys(_ known: [String]) throws {
        let container = try self.container(keyedBy: AnyKey.self)
        let allowed = Set(known)
        for key in container.allKeys where !allowed.contains(key.stringValue) {
            let path = (codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw NodeConfigurationError.unknownKey(path)
        }
    }
}

/// A configuration file that cannot be used, with what to fix.
public enum NodeConfigurationError: Error, Equatable, CustomStringConvertible {
    case unknownKey(String)
    case invalid(String)
    case unreadable(String)

    public var description: String {
        switch self {
        case .unknownKey(let key): "unknown configuration key \"\(key)\""
        case .invalid(let message): "invalid configuration: \(message)"
        case .unreadable(let message): "cannot read the configuration: \(message)"
        }
    }
}
