/// A server to connect to: `nats://[user[:pass]@]host[:port]`, `tls://…`, `host:port` or `host`.
public struct ServerAddress: Hashable, Sendable, CustomStringConvertible {
    /// `nats` or `tls`.
    public var scheme: String
    public var host: String
    public var port: Int
    /// User (or token, when there is no password) from the URL.
    public var user: String?
    public var password: String?

    public init(scheme: String = "nats", host: String, port: Int = 4222, user: String? = nil, password: String? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
        self.user = user
        self.password = password
    }

    /// Parses a server URL; nil when it is not one.
    public init?(parsing text: String) {
        var rest = Substring(text.trimmingCharacters(in: " \t"))
        var scheme = "nats"
        if let colon = rest.firstIndex(of: ":"), rest[colon...].hasPrefix("://") {
            scheme = rest[..<colon].lowercased()
            rest = rest[rest.index(colon, offsetBy: 3)...]
        }
        guard scheme == "nats" || scheme == "tls" else { return nil }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let info = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = info.firstIndex(of: ":") {
                user = String(info[..<colon]).removingPercentEncoding
                password = String(info[info.index(after: colon)...]).removingPercentEncoding
            } else {
                user = String(info).removingPercentEncoding
            }
        }
        var host: Substring
        var portText: Substring?
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.first == ":" { portText = after.dropFirst() } else if !after.isEmpty { return nil }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        if host.isEmpty { host = "127.0.0.1" }
        var port = 4222
        if let portText {
            guard let p = Int(portText), (0...65535).contains(p) else { return nil }
            port = p
        }
        self.init(scheme: scheme, host: String(host), port: port, user: user, password: password)
    }

    /// True for `tls://` URLs, which require TLS.
    public var requiresTLS: Bool { scheme == "tls" }

    /// `host:port`, the key used to tell servers apart.
    public var hostPort: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The URL with any password redacted, safe to log.
    public var description: String {
        var userInfo = ""
        if let user {
            userInfo = password == nil ? "***@" : "\(user):***@"
        }
        return "\(scheme)://\(userInfo)\(hostPort)"
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }

    fileprivate var removingPercentEncoding: String? {
        guard contains("%") else { return self }
        var out: [UInt8] = []
        var it = utf8.makeIterator()
        while let c = it.next() {
            if c == UInt8(ascii: "%"), let h = it.next(), let l = it.next(),
                let v = UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16)
            {
                out.append(v)
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
