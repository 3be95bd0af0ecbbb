#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address as bytes (4 or 16), parsed without touching the network.
struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6, in network order.
    let bytes: [UInt8]

    var isIPv4: Bool { bytes.count == 4 }

    init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A literal address: `10.0.0.1`, `::1`, `[::1]` or `fe80::1%eth0` (the zone is dropped).
    init?(_ text: some StringProtocol) {
        var literal = String(text)
        if literal.hasPrefix("["), literal.hasSuffix("]") { literal = String(literal.dropFirst().dropLast()) }
        if let zone = literal.firstIndex(of: "%") { literal = String(literal[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            self.bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, literal, &v6) == 1 else { return nil }
        self.bytes = withUnsafeBytes(of: &v6) { Array($0) }
    }

    var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = isIPv4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The IPv4 address an IPv6 one carries, for the forms a packet to it would reach: IPv4-mapped
    /// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/16`).
    var embeddedIPv4: IPAddress? {
        guard !isIPv4 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0..<4] == [0x00, 0x64, 0xff, 0x9b] && bytes[4..<12].allSatisfy({ $0 == 0 }) {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0] == 0x20 && bytes[1] == 0x02 { return IPAddress(bytes: Array(bytes[2..<6])) }
        return nil
    }

    /// Whether the first `length` bits equal those of `prefix` (same family).
    func hasPrefix(_ prefix: IPAddress, length: Int) -> Bool {
        guard prefix.bytes.count == bytes.count, length >= 0, length <= bytes.count * 8 else { return false }
        let whole = length / 8
        guard bytes[0..<whole] == prefix.bytes[0..<whole] else { return false }
        let rest = length % 8
        guard rest > 0 else { return true }
        let mask = UInt8(0xff) << (8 - rest)
        return bytes[whole] & mask == prefix.bytes[whole] & mask
    }
}

/// What kind of destination an address is, as far as a workload's egress is concerned.
enum AddressScope: Sendable, Equatable, CustomStringConvertible {
    case global
    case unspecified
    case loopback
    /// Link-local, where cloud metadata services answer (169.254.169.254).
    case linkLocal
    /// RFC 1918, unique local (fc00::/7), site-local and carrier-grade NAT space: someone's internal network.
    case privateNetwork
    case multicast
    /// Broadcast, documentation, benchmarking, IETF and future-use blocks: nothing a function should reach.
    case reserved

    var description: String {
        switch self {
        case .global: "a global address"
        case .unspecified: "an unspecified address"
        case .loopback: "a loopback address (this node's own host)"
        case .linkLocal: "a link-local address (where cloud metadata services answer)"
        case .privateNetwork: "a private-network address"
        case .multicast: "a multicast address"
        case .reserved: "a reserved address"
        }
    }

    /// The scope of `address`; an IPv6 address that carries an IPv4 one has that one's scope.
    init(of address: IPAddress) {
        if let inner = address.embeddedIPv4 {
            self.init(of: inner)
            return
        }
        let table = address.isIPv4 ? Self.ipv4 : Self.ipv6
        self = table.first { address.hasPrefix($0.prefix, length: $0.length) }?.scope ?? .global
    }

    private typealias Block = (prefix: IPAddress, length: Int, scope: AddressScope)

    private static func block(_ text: String, _ length: Int, _ scope: AddressScope) -> Block {
        (IPAddress(text)!, length, scope)
    }

    private static let ipv4: [Block] = [
        block("0.0.0.0", 8, .unspecified),
        block("127.0.0.0", 8, .loopback),
        block("169.254.0.0", 16, .linkLocal),
        block("10.0.0.0", 8, .privateNetwork),
        block("172.16.0.0", 12, .privateNetwork),
        block("192.168.0.0", 16, .privateNetwork),
        block("100.64.0.0", 10, .privateNetwork),
        block("224.0.0.0", 4, .multicast),
        block("255.255.255.255", 32, .reserved),
        block("240.0.0.0", 4, .reserved),
        block("192.0.0.0", 24, .reserved),
        block("192.0.2.0", 24, .reserved),
        block("198.51.100.0", 24, .reserved),
        block("203.0.113.0", 24, .reserved),
        block("198.18.0.0", 15, .reserved),
        block("192.88.99.0", 24, .reserved),
    ]

    private static let ipv6: [Block] = [
        block("::", 128, .unspecified),
        block("::1", 128, .loopback),
        block("fe80::", 10, .linkLocal),
        block("fc00::", 7, .privateNetwork),
        block("fec0::", 10, .privateNetwork),
        block("ff00::", 8, .multicast),
        block("::", 96, .reserved),  // IPv4-compatible (deprecated)
        block("100::", 64, .reserved),  // discard
        block("2001:db8::", 32, .reserved),  // documentation
        block("2001::", 23, .reserved),  // IETF protocol assignments, Teredo among them
    ]
}
