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
