/// A `Duration` carried as integer nanoseconds in JetStream JSON; nil when absent.
@propertyWrapper
public struct Nanoseconds: Codable, Sendable, Hashable {
    public var wrappedValue: Duration?

    public init(wrappedValue: Duration?) {
        self.wrappedValue = wrappedValue
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : Nanos.decode(try c.decode(Int64.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(Nanos.encode(wrappedValue)) } else { try c.encodeNil() }
    }
}

extension KeyedDecodingContainer {
    /// A missing key is nil, not an error.
    public func decode(_ type: Nanoseconds.Type, forKey key: Key) throws -> Nanoseconds {
        try decodeIfPresent(type, forKey: key) ?? Nanoseconds(wrappedValue: nil)
    }
}

extension KeyedEncodingContainer {
    /// Nil is left out rather than written as null.
    public mutating func encode(_ value: Nanoseconds, forKey key: Key) throws {
        if let d = value.wrappedValue { try encode(Nanos.encode(d), forKey: key) }
    }
}
