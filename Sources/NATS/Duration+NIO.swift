import NIOCore

extension Duration {
    /// Whole nanoseconds, saturating.
    package var nanoseconds: Int64 {
        let (s, atto) = components
        let (ns, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? .max : ns + atto / 1_000_000_000
    }

    /// The same span as a NIO `TimeAmount`.
    package var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }
}
