import CNexSpawn
import Foundation
import Synchronization

/// The agent's side of its link: worker threads that take turns reading the link, each running the trigger
/// it read and sending the result back. A trigger runs on the thread that read it (no hand-off), so with one
/// worker the link behaves as a plain loop; with more, several triggers run at once, one per worker. The
/// node bounds how many it sends, so triggers waiting for a worker stay in the socket, in order.
public final class AgentLinkServer: Sendable {
    /// What a trigger produced: the reply (`ok`) or the error text, and the time the function ran.
    public typealias Outcome = (ok: Bool, elapsedNanos: Int64, body: [UInt8])
    /// Runs one trigger: subject, payload and the node's trace context.
    public typealias Run = @Sendable (_ subject: String, _ payload: [UInt8], _ traceParent: String?) -> Outcome

    /// The link's read side, taken in turns. A pthread mutex, not `Mutex`: its holder blocks in `poll`, and a
    /// spinning lock would burn the CPU the running triggers need.
    private final class Reader: @unchecked Sendable {
        // @unchecked: the fields are used only while `lock` is held.
        let lock = NSLock()
        var buffer = LinkSocket.FrameBuffer()
        var ended = false
    }

    private let socket: LinkSocket
    private let run: Run
    private let onEnd: @Sendable (String) -> Void
    /// Held by the worker waiting for the next frame; the others wait for their turn (or run triggers).
    private let reader = Reader()
    private let workers = Mutex(0)

    private init(socket: LinkSocket, run: @escaping Run, onEnd: @escaping @Sendable (String) -> Void) {
        self.socket = socket
        self.run = run
        self.onEnd = onEnd
    }

    /// Serves triggers from `socket` with one worker until the link ends, then calls `onEnd` once with the
    /// reason (when the first worker sees the end; others may still be finishing their triggers).
    @discardableResult
    public static func serve(
        _ socket: LinkSocket, run: @escaping Run, onEnd: @escaping @Sendable (String) -> Void
    ) -> AgentLinkServer {
        let server = AgentLinkServer(socket: socket, run: run, onEnd: onEnd)
        socket.claimReading()
        server.growWorkers(to: 1)
        return server
    }

    /// Starts workers until there are `count` (never fewer than now).
    public func growWorkers(to count: Int) {
        let (first, last) = workers.withLock { n -> (Int, Int) in
            defer { n = max(n, count) }
            return (n, count)
        }
        guard first < last else { return }
        for index in first..<last {
            let name = "nex-link-agent-\(index)"
            let thread = Thread { [self] in
                nex_set_thread_name(name)
                work()
            }
            thread.name = name
            thread.start()
        }
    }

    private func work() {
        while true {
            let next: LinkFrame? = reader.lock.withLock {
                let r = reader
                while !r.ended {
                    switch socket.nextFrame(&r.buffer, timeout: nil) {
                    case .frame(let frame):
                        return frame
                    case .timedOut:
                        continue
                    case .ended(let reason):
                        r.ended = true
                        socket.finish()
                        onEnd(reason)
                    }
                }
                return nil
            }
            guard let frame = next else { return }
            guard case .trigger(let id, let subject, let payload, let traceParent) = frame else { continue }
            let outcome = run(subject, payload, traceParent)
            socket.send(.result(id: id, ok: outcome.ok, elapsedNanos: outcome.elapsedNanos, body: outcome.body))
        }
    }
}
