/// The agent's side of its link: runs each trigger on the link's own reader thread (a dedicated thread, so
/// engines may run there) and sends the result back.
public enum AgentLinkServer {
    /// What a trigger produced: the reply (`ok`) or the error text, and the time the function ran.
    public typealias Outcome = (ok: Bool, elapsedNanos: Int64, body: [UInt8])

    /// Serves triggers from `socket` one at a time until the link ends, then calls `onEnd` with the reason.
    public static func serve(
        _ socket: LinkSocket,
        run: @escaping @Sendable (_ subject: String, _ payload: [UInt8], _ traceParent: String?) -> Outcome,
        onEnd: @escaping @Sendable (String) -> Void
    ) {
        socket.startReading(name: "nex-link-agent") { frame in
            guard case .trigger(let id, let subject, let payload, let traceParent) = frame else { return }
            let outcome = run(subject, payload, traceParent)
            socket.send(.result(id: id, ok: outcome.ok, elapsedNanos: outcome.elapsedNanos, body: outcome.body))
        } onEnd: { reason in
            onEnd(reason)
        }
    }
}
