import Foundation

/// Every control-API reply: `{"type":"io.nats.nex.v1.<kind>_response","data":{…},"error":"…"}`.
/// On failure `data` is `""` (as Nex 0.x sends it); decoding accepts `data` omitted, `""` or null.
public struct Envelope<Payload: Codable & Sendable>: Codable, Sendable {
    public var type: String
    public var data: Payload?
    public var error: String?

    /// A successful reply of `kind` (e.g. `ping`, `info`, `run`).
    public init(kind: String, data: Payload) {
        self.type = "io.nats.nex.v1.\(kind)_response"
        self.data = data
        self.error = nil
    }

    /// A failed reply of `kind` with a message for people.
    public init(kind: String, error: String) {
        self.type = "io.nats.nex.v1.\(kind)_response"
        self.data = nil
        self.error = error
    }

    /// True when `error` is non-empty.
    public var isFailure: Bool { !(error ?? "").isEmpty }

    enum CodingKeys: String, CodingKey { case type, data, error }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decode(String.self, forKey: .type)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        if (try? c.decode(String.self, forKey: .data)) != nil {  // an object, or absent: decoded below
            data = nil  // "" on failure
        } else {
            data = try c.decodeIfPresent(Payload.self, forKey: .data)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        if let data { try c.encode(data, forKey: .data) } else { try c.encode("", forKey: .data) }
        if let error, !error.isEmpty { try c.encode(error, forKey: .error) }
    }
}
