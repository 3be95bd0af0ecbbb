import NIOCore

extension Duration {
    /// Whole nanoseconds, saturating.
    var nanoseconds: Int64 {
        let (s, atto) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : ns + atto / 1_000_000_000
    }

    /// The same span as a NIO `TimeAmount`.
    var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }
}
