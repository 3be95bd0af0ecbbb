import CNexSpawn
import DequeModule
import Foundation
public import NexModels
import Synchronization

/// The agent's side of its link, the agent's only road to the node.
///
/// Worker threads read the link and run each trigger on the thread that read it (no hand-off), so with one
/// worker the link behaves as a plain loop; with more, several triggers run at once, one per worker. The node
/// bounds how many it sends, so triggers waiting for a worker stay in the socket, in order. The node's other
/// frames (welcome, deploy, stop, heartbeat) go to the agent's control loop, in order, without blocking the
/// reader; host-call answers go to the thread that waits for them.
///
/// Idle workers wait in epoll with `EPOLLEXCLUSIVE`, each on an epoll instance of its own watching the link
/// and a shared eventfd: data on the link wakes one idle worker (as a rule; not all of them). A worker that
/// takes a trigger first deals with every other frame it read with it (and reads on while its last read filled
/// its buffer), handing further triggers to idle workers through the eventfd.
///
/// A function's host call blocks its worker (V8 calls host services synchronously) until the node answers
/// on the link. The waiting thread reads the link too, so an answer always finds a reader even when every
/// worker waits: a trigger it reads meanwhile is handed to the next free worker, ahead of the socket.
public final class AgentLinkServer: Sendable {
    /// What one trigger came to: the reply, or the error text (and whether retrying it could help).
    public struct Outcome: Sendable {
        public var ok: Bool
        public var elapsedNanos: Int64
        /// The reply, or the error text.
        public var body: [UInt8]
        /// A failure the function marked as one that retrying cannot help.
        public var permanent: Bool

        public init(ok: Bool, elapsedNanos: Int64, body: [UInt8], permanent: Bool = false) {
            self.ok = ok
            self.elapsedNanos = elapsedNanos
            self.body = body
            self.permanent = permanent
        }
    }
    /// Runs one trigger: subject, payload and the node's trace context.
    public typealias Run =
        @Sendable (
            _ subject: String, _ payload: [UInt8], _ traceParent: String?, _ context: [UInt8]?
        ) -> Outcome
    /// Takes the node's control frames (welcome, deploy, stop, heartbeat) in order. Called with the link's
    /// read lock held: it must hand the frame on and return.
    public typealias Control = @Sendable (LinkFrame) -> Void

    /// The link's read side and what readers share. Held only while reading without blocking, never while
    /// waiting.
    private final class Reader: @unchecked Sendable {
        // @unchecked: the fields are used only while `lock` is held.
        let lock = NSLock()
        var buffer = LinkSocket.FrameBuffer()
        var ended = false
        /// Triggers read by a thread waiting for a host call's answer, for the next free worker.
        var handedOver = Deque<LinkFrame>()
        /// Host calls waiting for their answers, by id.
        var calls: [UInt64: HostCallWait] = [:]
        var nextCallID: UInt64 = 1
    }

    /// One host call's wait: the answer, once it came, and the eventfd that wakes its thread.
    private final class HostCallWait: @unchecked Sendable {
        // @unchecked: `answer` is used only while the reader's lock is held.
        var answer: (ok: Bool, body: [UInt8])?
        let wakeup: Int32
        init(wakeup: Int32) { self.wakeup = wakeup }
    }

    private let socket: LinkSocket
    private let run: Run
    private let control: Control
    private let onEnd: @Sendable (String) -> Void
    private let reader = Reader()
    private let workers = Mutex(0)
    /// Wakes one idle worker: bytes are buffered that nobody took, a trigger was handed over, or the link
    /// ended (each worker that leaves passes it on). Closed with the server, after its last worker.
    private let wakeup: Int32
    /// Why the eventfd could not be made (errno), when it could not.
    private let wakeupError: Int32

    private init(
        socket: LinkSocket, run: @escaping Run, control: @escaping Control, onEnd: @escaping @Sendable (String) -> Void
    ) {
        self.socket = socket
        self.run = run
        self.control = control
        self.onEnd = onEnd
        self.wakeup = nex_eventfd()
        self.wakeupError = wakeup < 0 ? errno : 0
    }

    deinit {
        if wakeup >= 0 { Foundation.close(wakeup) }
    }

    /// Serves the node's frames from `socket` with one worker until the link ends, then calls `onEnd` once
    /// with the reason (when the first reader sees the end; workers may still be finishing their triggers).
    @discardableResult
    public static func serve(
        _ socket: LinkSocket, run: @escaping Run, control: @escaping Control,
        onEnd: @escaping @Sendable (String) -> Void
    ) -> AgentLinkServer {
        let server = AgentLinkServer(socket: socket, run: run, control: control, onEnd: onEnd)
        socket.claimReading()
        server.growWorkers(to: 1)
        return server
    }

    // MARK: Sending

    /// Sends a control frame to the node (hello, a reply, an exit) without waiting for room (it is small, and
    /// sent from tasks that must not block); false when the link has closed.
    @discardableResult
    public func send(_ frame: LinkFrame) -> Bool { socket.send(frame, waitingForRoom: false) }

    /// Waits (blocking, at most `timeout`) until what was sent is written: the agent's last words before it
    /// exits.
    @discardableResult
    public func waitUntilSent(timeout: Duration) -> Bool { socket.waitUntilSent(timeout: timeout) }

    /// The longest log line sent whole; a longer one is cut there and marked (a frame over the link's limit
    /// would end the link, and with it the workload).
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

    // MARK: Host calls

    /// Why a host call got no answer.
    public struct HostCallFailure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Calls a host service and waits (blocking the calling thread, at most `timeout`) for the node's answer:
    /// `ok` with the result as JSON, or the error text.
    public func hostCall(_ call: LinkFrame.HostCall, timeout: Duration) -> Result<
        (ok: Bool, body: [UInt8]), HostCallFailure
    > {
        // Names travel with a length byte: a longer one would arrive empty and end the link.
        for name in [call.service, call.method] where name.isEmpty || name.utf8.count > 255 {
            return .failure(HostCallFailure(description: "a host service or method name must be 1 to 255 bytes"))
        }
        let wakeup = nex_eventfd()
        guard wakeup >= 0 else { return .failure(HostCallFailure(description: "eventfd: \(Self.errorText())")) }
        defer { Foundation.close(wakeup) }
        let wait = HostCallWait(wakeup: wakeup)
        let registered: Result<(id: UInt64, epoll: Int32), HostCallFailure> = locked { r in
            guard !r.ended else { return .failure(HostCallFailure(description: "the link to the node has closed")) }
            // Made while the link is open: its descriptor cannot have been closed and reused yet.
            let epoll = nex_epoll_exclusive(socket.descriptor, wakeup)
            guard epoll >= 0 else { return .failure(HostCallFailure(description: "epoll: \(Self.errorText())")) }
            let id = r.nextCallID
            r.nextCallID += 1
            r.calls[id] = wait
            return .success((id, epoll))
        }
        let id: UInt64
        let epoll: Int32
        switch registered {
        case .success(let made): (id, epoll) = made
        case .failure(let failure): return .failure(failure)
        }
        defer { Foundation.close(epoll) }
        guard socket.send(.hostCall(id: id, call)) else {
            locked { $0.calls[id] = nil }
            return .failure(HostCallFailure(description: "the link to the node has closed"))
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            let outcome: Result<(ok: Bool, body: [UInt8]), HostCallFailure>? = locked { r in
                if let answer = wait.answer {
                    r.calls[id] = nil
                    return .success(answer)
                }
                if !r.ended { readWhileWaiting(r) }
                if let answer = wait.answer {
                    r.calls[id] = nil
                    return .success(answer)
                }
                guard !r.ended else {
                    r.calls[id] = nil
                    return .failure(HostCallFailure(description: "the link to the node closed during the call"))
                }
                return nil
            }
            if let outcome { return outcome }
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                locked { $0.calls[id] = nil }
                return .failure(HostCallFailure(description: "the node did not answer within \(timeout)"))
            }
            // Rounded up: a wait cut short by rounding would only spin once more.
            let millis = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            if nex_epoll_wait(epoll, wakeup, Int32(clamping: millis)) == 1 {
                var count: UInt64 = 0
                _ = Foundation.read(wakeup, &count, 8)  // non-blocking; clears the delivery's signal
            }
        }
    }

    /// Reads all the socket holds now on behalf of a thread waiting for its answer: answers are delivered
    /// (its own and others'), control frames passed on, triggers handed to the next free worker.
    private func readWhileWaiting(_ r: Reader) {
        let handedOver = r.handedOver.count
        drainLink(r)
        if r.handedOver.count > handedOver { wakeOne() }
    }

    // MARK: Workers

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
                guard case .trigger(let id, let subject, let payload, let traceParent, let context) = frame else {
                    continue
                }
                let outcome = run(subject, payload, traceParent, context)
                socket.send(
                    .result(
                        id: id, ok: outcome.ok, elapsedNanos: outcome.elapsedNanos, body: outcome.body,
                        permanent: outcome.permanent))
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
        return locked { r in
            guard !r.ended else { return .failure(WaitFailure(call: "the link", errno: 0)) }
            let epoll = nex_epoll_exclusive(socket.descriptor, wakeup)
            guard epoll >= 0 else { return .failure(WaitFailure(call: "epoll", errno: errno)) }
            return .success(IdleWaiter(epoll: epoll, wakeup: wakeup))
        }
    }

    /// A trigger to run, handed over or read now; the other frames read on the way are dispatched.
    private func take() -> Step {
        locked { r in
            guard !r.ended else { return .ended }
            var taken = r.handedOver.popFirst()
            while taken == nil && !r.ended {
                switch socket.nextFrameNow(&r.buffer) {
                case .frame(let frame):
                    if case .trigger = frame { taken = frame } else { dispatch(frame, r) }
                case .wouldBlock:
                    return .idle
                case .ended(let reason):
                    endLocked(reason)
                }
            }
            // What else was read with it is dealt with now, and what the socket may still hold when the last
            // read filled the buffer: no event announces bytes already read or already signalled, and a host
            // call's answer among them must reach its waiting thread before this trigger ends.
            if r.buffer.socketMayHoldMore { drainLink(r) } else { drainBuffer(r) }
            guard !r.ended, let taken else { return .ended }
            if !r.handedOver.isEmpty { wakeOne() }
            return .run(taken)
        }
    }

    /// Dispatches every frame read, or readable now without blocking (triggers to the next free worker).
    private func drainLink(_ r: Reader) {
        while !r.ended {
            switch socket.nextFrameNow(&r.buffer) {
            case .frame(let frame): dispatch(frame, r)
            case .wouldBlock: return
            case .ended(let reason): endLocked(reason)
            }
        }
    }

    /// Dispatches every whole frame already read (triggers to the next free worker), without reading more.
    private func drainBuffer(_ r: Reader) {
        while !r.ended {
            switch socket.bufferedFrame(&r.buffer) {
            case .frame(let frame): dispatch(frame, r)
            case .wouldBlock: return
            case .ended(let reason): endLocked(reason)
            }
        }
    }

    /// A frame this thread does not run, read with the lock held: a trigger is handed to the next free worker
    /// (the caller wakes one).
    private func dispatch(_ frame: LinkFrame, _ r: Reader) {
        switch frame {
        case .hostAnswer(let id, let ok, let body):
            // An answer nobody waits for came after its call gave up: dropped.
            guard let wait = r.calls[id] else { return }
            wait.answer = (ok, body)
            var one: UInt64 = 1
            _ = Foundation.write(wait.wakeup, &one, 8)
        case .welcome, .deploy, .stop, .heartbeat:
            control(frame)
        case .trigger:
            r.handedOver.append(frame)
        case .hello, .reply, .result, .hostCall, .log, .exited:
            endLocked("the node sent a frame only an agent sends (\(frame.kindName))")
        }
    }

    private func end(_ reason: String) {
        locked { r in if !r.ended { endLocked(reason) } }
        wakeOne()
    }

    /// Ends the link (with the read lock held; `onEnd` runs under it too, so it must not call back in).
    private func endLocked(_ reason: String) {
        reader.ended = true
        wakeOne()  // idle workers see the end; closing the socket may take its readiness with it
        socket.finish()
        for wait in reader.calls.values {
            var one: UInt64 = 1
            _ = Foundation.write(wait.wakeup, &one, 8)
        }
        onEnd(reason)
    }

    private func wakeOne() {
        var one: UInt64 = 1
        _ = Foundation.write(wakeup, &one, 8)
    }

    private func locked<T>(_ body: (Reader) -> T) -> T {
        reader.lock.lock()
        defer { reader.lock.unlock() }
        return body(reader)
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}

/// One worker's epoll instance: the link and the shared eventfd, both `EPOLLEXCLUSIVE`, so that an event
/// wakes one idle worker (the kernel promises "one or more"; a worker woken for nothing looks and sleeps).
private struct IdleWaiter {
    let epoll: Int32
    let wakeup: Int32

    /// Sleeps until the link has data or a worker asks for help, and clears the request if it was one; the
    /// failure when epoll fails (a signal is none: the caller just looks again).
    func wait() -> WaitFailure? {
        switch nex_epoll_wait(epoll, wakeup, -1) {
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
