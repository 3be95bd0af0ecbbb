public import NATSProtocol

extension NATSMessage {
    /// The payload as bytes.
    public var bytes: [UInt8] { Array(payload.readableBytesView) }

    /// The payload decoded as UTF-8.
    public var string: String { String(buffer: payload) }

    /// The status code of the status line, if any (503 no responders, 408, 409, 100…).
    public var status: Int? { headers?.status }
}
