import Foundation

/// Blocking reads and writes on a descriptor, for threads of their own (never the cooperative pool).
public enum BlockingIO {
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
