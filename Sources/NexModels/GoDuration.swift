/// Go's `time.Duration.String()` text (`1h2m3s`, `1.5s`, `150ms`, `0s`), which Nex uses for uptimes.
public enum GoDuration {
    /// Formats nanoseconds exactly as Go does.
    public static func format(nanoseconds ns: Int64) -> String {
        if ns == 0 { return "0s" }
        let negative = ns < 0
        var u = ns.magnitude
        var out: String
        if u < 1_000_000_000 {
            // Sub-second: ns, µs or ms with a fraction.
            let (unit, scale): (String, UInt64) =
                u < 1_000 ? ("ns", 1) : u < 1_000_000 ? ("µs", 1_000) : ("ms", 1_000_000)
            out = fraction(u, scale: scale) + unit
        } else {
            var text = fraction(u % 60_000_000_000, scale: 1_000_000_000) + "s"
            u /= 60_000_000_000
            if u > 0 {
                text = String(u % 60) + "m" + text
                u /= 60
                if u > 0 { text = String(u) + "h" + text }
            }
            out = text
        }
        return negative ? "-" + out : out
    }

    /// Formats a `Duration`.
    public static func format(_ d: Duration) -> String {
        let (s, atto) = d.components
        return format(nanoseconds: s * 1_000_000_000 + atto / 1_000_000_000)
    }

    private static func fraction(_ v: UInt64, scale: UInt64) -> String {
        let whole = v / scale
        var frac = v % scale
        guard frac > 0 else { return String(whole) }
        var digits = String(scale).count - 1
        var text = ""
        while frac % 10 == 0 {
            frac /= 10
            digits -= 1
        }
        text = String(frac)
        text = String(repeating: "0", count: max(0, digits - text.count)) + text
        return "\(whole).\(text)"
    }
}

extension GoDuration {
    /// Parses Go's duration text (`1h2m3.5s`, `150ms`, `2µs`, `0s`) into nanoseconds; nil when it is not one.
    public static func parse(_ text: String) -> Int64? {
        let units: [(String, Double)] = [
            ("ns", 1), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
        ]
        var rest = Substring(text)
        let negative = rest.hasPrefix("-")
        if negative || rest.hasPrefix("+") { rest = rest.dropFirst() }
        guard !rest.isEmpty else { return nil }
        if rest == "0" { return 0 }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            // Longest unit first: "ms" before "m", "µs" before "s".
            guard
                let (unit, scale) = units.sorted(by: { $0.0.count > $1.0.count }).first(where: { rest.hasPrefix($0.0) })
            else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return Int64((negative ? -total : total).rounded())
    }

    /// A duration for people: Go's text rounded to whole seconds (`8m47s`, `1h2m3s`), days as `3d4h`;
    /// under a second it stays as Go writes it (`150ms`).
    public static func human(nanoseconds ns: Int64) -> String {
        guard ns.magnitude >= 1_000_000_000 else { return format(nanoseconds: ns) }
        let seconds = (ns + (ns >= 0 ? 500_000_000 : -500_000_000)) / 1_000_000_000
        let days = seconds / 86_400
        if days.magnitude >= 1 {
            let hours = (seconds % 86_400) / 3_600
            return "\(days)d" + (hours == 0 ? "" : "\(hours.magnitude)h")
        }
        return format(nanoseconds: seconds * 1_000_000_000)
    }

    /// ``human(nanoseconds:)`` of Go duration text; text that does not parse is returned as it is.
    public static func human(_ text: String) -> String {
        parse(text).map { human(nanoseconds: $0) } ?? text
    }
}
