import DequeModule
import NATSProtocol
import NIOCore
import Synchronization

#if os(Linux)
    import Glibc
#endif

/// Everything the client shares between callers and its event loop, guarded by one `Mutex` in ``NATSClient``.
struct ClientState {
    /// Counters for ``NATSClient/statistics``.
    var statistics = NATSStatistics()
    enum Phase: Equatable {
        case idle
        case connecting
        case connected
        case reconnecting
        case draining
        case closed
    }

    /// Who receives a subscription's messages.
    enum Target {
        /// A user subscription with its own buffer.
        case subscription(NATSSubscription)
        /// The shared request inbox, resolved directly on the event loop.
        case requestMux(RequestMux)
    }

    struct SubscriptionEntry {
        var subject: String
        var queue: String?
        var target: Target
        /// Auto-unsubscribe after this many messages in total.
        var max: Int?
        var received = 0
    }

    /// Who is waiting for the PONG of a PING, in the order the PINGs were queued.
    enum PongWaiter {
        case keepAlive
        case flush(id: Int, CheckedContinuation<Void, any Error>)
    }

    var phase = Phase.idle
    var channel: (any Channel)?
    var currentServer: ServerAddress?
    var info: ServerInfo?
    var pool: ServerPool
    var keepAlive: KeepAliveStateMachine

    /// Operations not yet handed to the socket (also what is buffered while disconnected).
    var outbox: ByteBuffer
    var flushScheduled = false
    /// The pending flush was held back once to gather more (see `NATSClient.flushOutbox`).
    var flushDeferred = false
    /// Capacity of the outbox allocated after the next write (follows the size of recent writes).
    var nextOutboxCapacity = 64 << 10
    /// When the outbox was last handed to the socket.
    var lastWrite = NIODeadline.uptimeNanoseconds(0)
    /// A duplicate of the connection's TCP socket (plain TCP only; TLS goes through NIO). A lone request is
    /// written to it from the caller's thread, saving the wake-up of the event loop, but only while NIO
    /// holds none of our bytes (`nioWrites` is zero) and the outbox is empty, so order is kept.
    var directWriter: Int32?
    /// Outbox writes of the current connection handed to NIO and not yet completed (only with a direct
    /// writer). Completions decrement it without taking the state lock.
    var nioWrites: PendingWrites?
    /// Frames written by callers through `directWriter` (for tests and profiling).
    var directWrites = 0
    /// Publishers waiting for the outbox to shrink below the limit.
    var roomWaiters: [CheckedContinuation<Void, any Error>] = []

    var subscriptions: [UInt64: SubscriptionEntry] = [:]
    var nextSID: UInt64 = 1
    var pongWaiters = Deque<PongWaiter>()
    /// How many of the last `pongWaiters` still have their PING in the outbox (not yet on the wire).
    var unsentPings = 0
    var requestMux: RequestMux?
    var nextWaiterID = 0
    /// Why the current connection is being closed, when we know (stale, protocol error, server -ERR).
    var disconnectReason: NATSError?
    /// Set once everything was failed and finished on close.
    var finalized = false

    init(pool: ServerPool, maxPingsOutstanding: Int) {
        self.pool = pool
        self.keepAlive = KeepAliveStateMachine(maxOutstanding: maxPingsOutstanding)
        self.outbox = ByteBufferAllocator().buffer(capacity: 64 << 10)
    }

    var isConnected: Bool { phase == .connected || phase == .draining }

    /// Writes the outbox (one frame just queued) to the socket from the calling thread; true when all of it
    /// went. Only while connected over plain TCP, with no flush pending, nothing of ours inside NIO, and the
    /// last write long enough ago that this is a lone frame (a stream is left to the loop to batch). What a
    /// full socket does not take stays in the outbox for the loop, in order. The client's lock is held
    /// across the `send` (microseconds on an idle socket), which is another reason only a lone frame does.
    mutating func writeDirectly() -> Bool {
        // An inactive channel was closed by NIO (the duplicate keeps the socket open): let the loop see it.
        guard let fd = directWriter, isConnected, !flushScheduled, channel?.isActive == true,
            nioWrites?.count.load(ordering: .acquiring) == 0
        else { return false }
        let now = NIODeadline.now()
        guard now - lastWrite >= Self.directWriteGap else { return false }
        #if os(Linux)
            let written = outbox.withUnsafeReadableBytes { bytes in
                send(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
        #else
            let written = 0  // only Linux transports make a direct writer
        #endif
        guard written > 0 else { return false }  // full, or failing: the loop writes it and sees why
        outbox.moveReaderIndex(forwardBy: written)
        guard outbox.readableBytes == 0 else { return false }  // the rest goes at once (no coalescing wait)
        lastWrite = now
        outbox.clear()
        directWrites += 1
        return true
    }

    /// Frames closer together than this are a stream: the event loop batches them (see `flushOutbox`).
    static let directWriteGap = TimeAmount.microseconds(50)

    /// Closes the duplicate socket (the connection it belonged to is gone).
    mutating func closeDirectWriter() {
        if let fd = directWriter { TransportConnection.closeDirectWriter(fd) }
        directWriter = nil
        nioWrites = nil
    }

    mutating func allocateWaiterID() -> Int {
        nextWaiterID += 1
        return nextWaiterID
    }

    mutating func allocateSID() -> UInt64 {
        defer { nextSID += 1 }
        return nextSID
    }

    /// Queues a PING whose PONG resolves `waiter`.
    mutating func queuePing(_ waiter: PongWaiter) {
        ClientOp.writePing(into: &outbox)
        pongWaiters.append(waiter)
        unsentPings += 1
    }

    /// The connection is gone: PINGs already sent will never be answered. Returns their flush waiters.
    mutating func dropSentPings() -> [CheckedContinuation<Void, any Error>] {
        var failed: [CheckedContinuation<Void, any Error>] = []
        while pongWaiters.count > unsentPings {
            if case .flush(_, let c) = pongWaiters.removeFirst() { failed.append(c) }
        }
        return failed
    }

    /// Rebuilds the outbox for a new connection: every live subscription first, then what was queued.
    mutating func prepareResubscribe() {
        var fresh = ByteBufferAllocator().buffer(capacity: max(outbox.readableBytes + 4096, 64 << 10))
        for (sid, entry) in subscriptions.sorted(by: { $0.key < $1.key }) {
            ClientOp.writeSubscribe(subject: entry.subject, queue: entry.queue, sid: sid, into: &fresh)
            if let max = entry.max {
                ClientOp.writeUnsubscribe(sid: sid, max: max - entry.received, into: &fresh)
            }
        }
        fresh.writeBuffer(&outbox)
        outbox = fresh
    }
}

/// A count of writes inside NIO, one per connection (a late completion of an old connection's write
/// counts down its own counter, never the next connection's).
final class PendingWrites: Sendable {
    let count = Atomic<Int>(0)
}
