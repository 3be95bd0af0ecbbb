import CNexSpawn
import Foundation

/// An anonymous in-memory file (memfd): a descriptor to hand an engine as stdin or stdout without a pipe
/// (no reader thread, no deadlock when the output is larger than a pipe's buffer).
public final class MemoryFile: @unchecked Sendable {
    /// The descriptor; closed on deinit.
    public let fd: Int32

    /// A new empty file; throws when the kernel refuses.
    public init(name: String) throws {
        let fd = nex_memfd(name)
        guard fd >= 0 else { throw SpawnError(executable: "memfd_create", errno: errno) }
        self.fd = fd
    }

    /// A file holding `bytes`, positioned at its start.
    public convenience init(name: String, contents bytes: [UInt8]) throws {
        try self.init(name: name)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw SpawnError(executable: "write", errno: errno) }
            offset += n
        }
        lseek(fd, 0, SEEK_SET)
    }

    /// Everything written so far (up to `limit` bytes; more is reported as truncation by returning nil).
    public func contents(limit: Int) -> [UInt8]? {
        let size = Int(lseek(fd, 0, SEEK_END))
        guard size <= limit else { return nil }
        var out = [UInt8](repeating: 0, count: size)
        var offset = 0
        while offset < size {
            let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + offset, size - offset, off_t(offset)) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
        return Array(out[0..<offset])
    }

    deinit { close(fd) }
}
