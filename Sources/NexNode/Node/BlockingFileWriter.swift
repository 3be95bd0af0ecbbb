import Foundation
import Logging
import NexProcess

extension BlockingIO {
    /// ``remove(_:)`` for clean-ups that must go on: a failure is logged with what the path was.
    static func remove(_ path: String, what: String, logger: Logger) async {
        do { try await remove(path) } catch {
            logger.warning("cannot remove \(what)", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}

/// A new file written chunk by chunk through ``BlockingIO``; ``finish()`` syncs and closes it.
final class BlockingFileWriter: Sendable {
    let path: String
    private let descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Creates (or truncates) `path` with `mode`.
    static func create(_ path: String, mode: mode_t) async throws -> BlockingFileWriter {
        let fd = try await BlockingIO.run { () throws -> Int32 in
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
            guard fd >= 0 else { throw SystemCallError.current("cannot create \(path)") }
            return fd
        }
        return BlockingFileWriter(path: path, descriptor: fd)
    }

    func write(_ bytes: [UInt8]) async throws {
        let (fd, path) = (descriptor, self.path)
        try await BlockingIO.run {
            try bytes.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0, errno == EINTR { continue }
                    guard n > 0 else { throw SystemCallError.current("cannot write \(path)") }
                    offset += n
                }
            }
        }
    }

    /// Flushes the file to disk and closes it.
    func finish() async throws {
        let (fd, path) = (descriptor, self.path)
        try await BlockingIO.run {
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw SystemCallError.current("cannot sync \(path)") }
        }
    }

    /// Closes without syncing and removes the file (after a failure).
    func discard() async {
        let (fd, path) = (descriptor, self.path)
        await BlockingIO.run {
            close(fd)
            unlink(path)
        }
    }
}

/// A system call that failed: what was being done and `errno`'s text.
struct SystemCallError: Error, CustomStringConvertible {
    let doing: String
    let code: Int32

    /// The error for the current `errno`.
    static func current(_ doing: String) -> SystemCallError { SystemCallError(doing: doing, code: errno) }

    var description: String { "\(doing): \(String(cString: strerror(code)))" }
}
