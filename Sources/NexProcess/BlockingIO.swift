import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Work that blocks its thread (files, short socket exchanges) runs on ``pool``: never on an event loop (it
/// would stall every connection on it) nor on the cooperative pool (2 threads on 2 cores). The pool is wider
/// than the cores because its threads wait on disks and sockets, not on the CPU, and it is not NIO's shared
/// pool, which a slow name lookup could fill. Work that waits without end (a relay, a listener) never goes
/// here: it lives on event loops.
public enum BlockingIO {
    /// The pool, started on first use.
    public static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threadCount.load(ordering: .relaxed))
        pool.start()
        return pool
    }()

    private static let threadCount = Atomic(8)

    /// For a process that does one thing (an agent runs one workload): two blocking threads, and one NIO event
    /// loop and one NIO blocking thread instead of one per CPU. Call it once, first thing in `main`, before any
    /// pool or loop starts (NIO stops the process when its sizes change after first use).
    public static func useFewThreads() {
        threadCount.store(2, ordering: .relaxed)
        NIOSingletons.groupLoopCountSuggestion = 1
        NIOSingletons.blockingPoolThreadCountSuggestion = 1
    }

    /// Runs `work` on the pool. A task cancelled meanwhile still has its work done: clean-ups (close, unlink,
    /// remove) must happen whatever happened to the task that asked for them.
    public static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.submit { _ in continuation.resume(with: Result { try work() }) }
        }
    }

    /// ``run(_:)`` for work that cannot fail.
    public static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            pool.submit { _ in continuation.resume(returning: work()) }
        }
    }

    /// Removes a file or a directory tree. A path that is already gone is not an error.
    public static func remove(_ path: String) async throws {
        try await run {
            guard FileManager.default.fileExists(atPath: path) else { return }
            try FileManager.default.removeItem(atPath: path)
        }
    }

    // MARK: On the calling thread (which must be one that may block)

    /// Reads one line (without its newline), a byte at a time so nothing after it is consumed; nil at end
    /// of file, on an error, or past `limit` bytes.
    public static func readLine(_ fd: Int32, limit: Int = 64 << 10) -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < limit {
            let n = read(fd, &byte, 1)
            if n < 0, errno == EINTR { continue }
            guard n == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }

    /// Writes all of `bytes` (no SIGPIPE on a socket); false when the descriptor failed.
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            var n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == ENOTSOCK { n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}
