import CNexSpawn
import Foundation
import Synchronization

/// The agent's side of its link: worker threads that each run the trigger they read and send the result
/// back. A trigger runs on the thread that read it (no hand-off), so with one worker the link behaves as a
/// plain loop; with more, several triggers run at once, one per worker. The node bounds how many it sends, so
/// triggers waiting for a worker stay in the socket, in order.
///
/// Idle workers wait in epoll with `EPOLLEXCLUSIVE`, each on an epoll instance of its own watching the link
/// and a shared eventfd: data on the link wakes one idle worker (as a rule; not all of them), and a worker
/// that takes a frame wakes nobody unless more bytes are buffered. (Workers used to take turns holding a read lock: every frame
/// then woke the next worker to wait on the socket, a futex wake and two context switches per trigger.)
public final class AgentLinkServer: Sendable {
    /// What a trigger produced: the reply (`ok`) or the error text, and the time the function ran.
    public typealias Outcome = (ok: Bool, elapsedNanos: Int64, body: [UInt8])
    /// Runs one trigger: subject, payload and the node's trace context.
    public typealias Run = @Sendable (_ subject: String, _ payload: [UInt8], _ traceParent: String?) -> Outcome

    /// The link's read side. Held only while reading without blocking, never while waiting.
    private final class Reader: @unchecked Sendable {
        // @unchecked: the fields are used only while `lock` is held.
        let lock = NSLock()
        var buffer = LinkSocket.FrameBuffer()
        var ended = false
    }

    private let socket: LinkSocket
    private let run: Run
    private let onEnd: @Sendable (String) -> Void
    private let reader = Reader()
    private let workers = Mutex(0)
    /// Wakes one idle worker: bytes are buffered that nobody took, or the link ended (each worker that
    /// leaves passes it on). Closed with the server, after its last worker.
    private let wakeup: Int32
    /// Why the eventfd could not be made (errno), when it could not.
    private let wakeupError: Int32

    private init(socket: LinkSocket, run: @escaping Run, onEnd: @escaping @Sendable (String) -> Void) {
        self.socket = socket
        self.run = run
        self.onEnd = onEnd
        self.wakeup = nex_eventfd()
        self.wakeupError = wakeup < 0 ? errno : 0
    }

    deinit {
        if wakeup >= 0 { Foundation.close(wakeup) }
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

    /// The longest log line sent whole; a longer one is cut there and marked (a frame over the link's limit
    /// would end the link, and with it the function).
    public static let maxLogLineBytes = 64 << 10

    /// Sends a line the workload logged to the node (`level` as in `LogEntry`, clamped to a byte), from the
    /// calling thread when the socket takes it at once; false when the link has closed.
    @discardableResult
    public func sendLog(level: Int, text: String) -> Bool {
        var bytes = Array(text.utf8)
        if bytes.count > Self.maxLogLineBytes {
            bytes = Array(bytes.prefix(Self.maxLogLineBytes)) + Array(" …[truncated]".utf8)
        }
        return socket.send(.log(level: Int8(clamping: level), text: bytes))
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
                work(first: index == 0)
            }
            thread.name = name
            thread.start()
        }
    }

    private enum Step {
        case run(LinkFrame)
        case idle
        case ended
    }

    /// One worker's loop. The first worker's failure to wait ends the link (nobody would serve it); a later
    /// one's only leaves the function with fewer instances running at once.
    private func work(first: Bool) {
        let waiter: IdleWaiter
        switch makeWaiter() {
        case .success(let made):
            waiter = made
        case .failure(let failure):
            if first { end("cannot wait for the link: \(failure)") }
            return
        }
        defer { waiter.close() }
        while true {
            switch take() {
            case .run(let frame):
                guard case .trigger(let id, let subject, let payload, let traceParent) = frame else { continue }
                let outcome = run(subject, payload, traceParent)
                socket.send(.result(id: id, ok: outcome.ok, elapsedNanos: outcome.elapsedNanos, body: outcome.body))
            case .idle:
                if let failure = waiter.wait() { end("cannot wait for the link: \(failure)") }
            case .ended:
                wakeOne()  // passes the end on to a worker still waiting
                return
            }
        }
    }

    /// This worker's epoll instance; never once the link has ended (its descriptor may be closed and reused).
    private func makeWaiter() -> Result<IdleWaiter, WaitFailure> {
        guard wakeup >= 0 else { return .failure(WaitFailure(call: "eventfd", errno: wakeupError)) }
        reader.lock.lock()
        defer { reader.lock.unlock() }
        guard !reader.ended else { return .failure(WaitFailure(call: "the link", errno: 0)) }
        let epoll = nex_epoll_exclusive(socket.descriptor, wakeup)
        guard epoll >= 0 else { return .failure(WaitFailure(call: "epoll", errno: errno)) }
        return .success(IdleWaiter(epoll: epoll, wakeup: wakeup))
    }

    /// A frame to run, if one is buffered or the socket has one now.
    private func take() -> Step {
        reader.lock.lock()
        defer { reader.lock.unlock() }
        let r = reader
        if r.ended { return .ended }
        switch socket.nextFrameNow(&r.buffer) {
        case .frame(let frame):
            if r.buffer.holdsMore { wakeOne() }  // the next frame is ours already: no event will announce it
            return .run(frame)
        case .wouldBlock:
            return .idle
        case .ended(let reason):
            endLocked(reason)
            return .ended
        }
    }

    private func end(_ reason: String) {
        reader.lock.lock()
        defer { reader.lock.unlock() }
        if !reader.ended { endLocked(reason) }
        wakeOne()
    }

    private func endLocked(_ reason: String) {
        reader.ended = true
        socket.finish()
        onEnd(reason)
    }

    private func wakeOne() {
        var one: UInt64 = 1
        _ = Foundation.write(wakeup, &one, 8)
    }
}

/// One worker's epoll instance: the link and the shared eventfd, both `EPOLLEXCLUSIVE`, so that an event
/// wakes one idle worker (the kernel promises "one or more"; a worker woken for nothing looks and sleeps).
private struct IdleWaiter {
    let epoll: Int32
    let wakeup: Int32

    /// Sleeps until the link has data or a worker asks for help, and clears the request if it was one; the
    /// failure when epoll fails (a signal is none: the caller just looks again).
    func wait() -> WaitFailure? {
        switch nex_epoll_wait(epoll, wakeup) {
        case 1:
            var count: UInt64 = 0
            _ = Foundation.read(wakeup, &count, 8)  // non-blocking: another worker may have taken it
            return nil
        case 0:
            return nil  // the link has data: no request to clear (and no read system call per trigger for it)
        default:
            let code = errno
            return code == EINTR ? nil : WaitFailure(call: "epoll_wait", errno: code)
        }
    }

    func close() { Foundation.close(epoll) }
}

/// A system call a worker needed to wait for the link failed.
private struct WaitFailure: Error, CustomStringConvertible {
    var call: String
    var errno: Int32
    var description: String {
        errno == 0 ? "\(call) has ended" : "\(call): \(String(cString: strerror(errno)))"
    }
}
