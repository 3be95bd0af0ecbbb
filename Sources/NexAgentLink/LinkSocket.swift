import CNexSpawn
import DequeModule
import Foundation

/// The agent's end of its link to the node: a Unix stream socket read by the agent's worker threads (see
/// ``AgentLinkServer``) and written without blocking them for long: a send tries a non-blocking write first
/// and leaves what did not fit to a writer thread, in order. What waits for the writer is bounded
/// (``queueLimit`` bytes): past it a sender waits for room, so a node that stops reading slows the
/// functions that write to it instead of growing the agent's memory without end. (The node's end lives on an
/// event loop, in ``AgentLinkClient``.)
public final class LinkSocket: @unchecked Sendable {
    // @unchecked: every mutable field below is guarded by `condition`.
    private let fd: Int32
    private let condition = NSCondition()
    private var queue = Deque<[UInt8]>()
    /// Bytes in `queue`.
    private var queuedBytes = 0
    /// The most bytes that wait for the writer before senders wait for room.
    public static let queueLimit = 16 << 20

    /// Bytes waiting for the writer now.
    var waitingBytes: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedBytes
    }
    private var writing = false
    private var writerStarted = false
    private var readerStarted = false
    private var closed = false
    private var descriptorClosed = false

    /// Takes ownership of `fd`, a connected stream socket.
    public init(fd: Int32) {
        self.fd = fd
    }

    /// A connected pair of stream sockets, both close-on-exec: the node's end (for
    /// ``AgentLinkClient/start(descriptor:on:)``) and the descriptor to hand to the agent (the spawn gives the
    /// child its own copy, after which the caller closes this one).
    public static func socketPair() throws -> (nodeEnd: Int32, agentEnd: Int32) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw LinkError("socketpair: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }

    /// Queues `frame`; false when the link is closed. Blocks only while more than ``queueLimit`` bytes wait,
    /// and never when `waitingForRoom` is false (the agent's few small control frames, sent from tasks).
    @discardableResult
    public func send(_ frame: LinkFrame, waitingForRoom: Bool = true) -> Bool {
        let bytes = frame.encoded()
        condition.lock()
        defer { condition.unlock() }
        while waitingForRoom && queuedBytes > Self.queueLimit && !closed { condition.wait() }
        if closed { return false }
        var offset = 0
        if queue.isEmpty && !writing {
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes {
                    Foundation.send(
                        fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n > 0 {
                    offset += n
                } else if n < 0, errno == EINTR {
                    continue
                } else if n < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                    break
                } else {
                    closed = true
                    shutdown(fd, Int32(SHUT_RDWR))
                    return false
                }
            }
            if offset == bytes.count { return true }
        }
        let rest = offset == 0 ? bytes : Array(bytes[offset...])
        queue.append(rest)
        queuedBytes += rest.count
        if !writerStarted {
            writerStarted = true
            let thread = Thread { [self] in
                nex_set_thread_name("nex-link-writer")  // the name the kernel shows
                writeQueued()
            }
            thread.name = "nex-link-writer"
            thread.start()
        }
        condition.broadcast()  // the writer, whichever sender waits for room is not woken in its place
        return true
    }

    /// The writer thread: blocking writes of what the fast path could not send, until the link closes.
    private func writeQueued() {
        condition.lock()
        while true {
            while queue.isEmpty && !closed { condition.wait() }
            if closed { break }
            let bytes = queue.removeFirst()
            queuedBytes -= bytes.count
            writing = true
            condition.unlock()
            var offset = 0
            var failed = false
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes {
                    Foundation.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    offset += n
                } else if !(n < 0 && errno == EINTR) {
                    failed = true
                    break
                }
            }
            condition.lock()
            writing = false
            condition.broadcast()
            if failed {
                closed = true
                shutdown(fd, Int32(SHUT_RDWR))
            }
        }
        condition.unlock()
    }

    /// Waits (blocking, at most `timeout`) until every queued frame is written; false when time ran out or the
    /// link closed first. For an agent about to exit: its last reply and lines must not die with it.
    public func waitUntilSent(timeout: Duration) -> Bool {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while (!queue.isEmpty || writing) && !closed {
            guard condition.wait(until: deadline) else { return false }
        }
        return queue.isEmpty && !writing
    }

    /// Says that frames will be read (with ``nextFrameNow(_:)``), so that ``close()`` leaves closing the
    /// descriptor to the reader's ``finish()``.
    func claimReading() {
        condition.lock()
        readerStarted = true
        condition.unlock()
    }

    /// Bytes read from the link and not yet decoded, kept between calls to ``nextFrameNow(_:)``.
    struct FrameBuffer {
        var bytes: [UInt8] = []
        var start = 0
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        /// The last read filled `chunk`: the socket may hold more than was read.
        var socketMayHoldMore = false
    }

    /// What reading the link gave.
    enum ReadOutcome {
        case frame(LinkFrame)
        /// No whole frame yet, and the socket has nothing more now.
        case wouldBlock
        case ended(String)
    }

    /// The descriptor, for waiting on it (``AgentLinkServer`` registers it with epoll).
    var descriptor: Int32 { fd }

    /// The next whole frame from `buffer` or from what the socket holds now, without blocking. One reader at
    /// a time (the caller serializes).
    func nextFrameNow(_ buffer: inout FrameBuffer) -> ReadOutcome {
        while true {
            switch bufferedFrame(&buffer) {
            case .wouldBlock: break
            case let outcome: return outcome
            }
            if buffer.start > 0 {
                buffer.bytes.removeFirst(buffer.start)
                buffer.start = 0
            }
            let n = buffer.chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                buffer.socketMayHoldMore = false
                return .wouldBlock
            }
            if n == 0 { return .ended("the other end closed the link") }
            if n < 0 { return .ended("read: \(String(cString: strerror(errno)))") }
            buffer.socketMayHoldMore = n == buffer.chunk.count
            buffer.bytes += buffer.chunk[0..<n]
        }
    }

    /// The next whole frame already in `buffer`, without reading the socket (`wouldBlock`: none is whole).
    func bufferedFrame(_ buffer: inout FrameBuffer) -> ReadOutcome {
        do {
            guard let (frame, used) = try LinkFrame.decode(buffer.bytes[buffer.start...]) else { return .wouldBlock }
            buffer.start += used
            if buffer.start == buffer.bytes.count {
                buffer.bytes.removeAll(keepingCapacity: true)
                buffer.start = 0
            }
            return .frame(frame)
        } catch {
            return .ended("malformed link data: \(error)")
        }
    }

    /// Marks the link closed, waits for a write in progress, then closes the descriptor (only now, so that
    /// no thread can write to a number the kernel has reused).
    func finish() {
        condition.lock()
        closed = true
        if !descriptorClosed { shutdown(fd, Int32(SHUT_RDWR)) }
        condition.broadcast()
        while writing { condition.wait() }
        let alreadyClosed = descriptorClosed
        descriptorClosed = true
        condition.unlock()
        if !alreadyClosed { Foundation.close(fd) }
    }

    /// Closes the link: the reader sees the end (and closes the descriptor); later sends return false.
    public func close() {
        condition.lock()
        let reading = readerStarted
        closed = true
        // Never on a closed descriptor: its number may already belong to another socket of this process.
        if !descriptorClosed { shutdown(fd, Int32(SHUT_RDWR)) }
        condition.broadcast()
        condition.unlock()
        if !reading { finish() }
    }
}

/// Why the link cannot carry a call.
public struct LinkError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
