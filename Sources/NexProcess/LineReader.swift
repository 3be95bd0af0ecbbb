import Foundation

/// Reads a pipe line by line on its own thread until end of file, then closes it.
///
/// Lines longer than `maxLine` bytes are delivered in pieces, so a workload that never prints a newline
/// cannot make the reader hold unbounded memory.
public enum LineReader {
    /// Calls `onLine` for each line (without the newline, invalid UTF-8 repaired) and `onEnd` at end of file.
    public static func start(
        fd: Int32, name: String, maxLine: Int = 16 * 1024, onLine: @escaping @Sendable (String) -> Void,
        onEnd: @escaping @Sendable () -> Void = {}
    ) {
        startThread(named: name) {
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0, errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: chunk[0..<n])
                var start = 0
                while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                    onLine(String(decoding: pending[start..<newline], as: UTF8.self))
                    start = newline + 1
                }
                pending.removeFirst(start)
                while pending.count >= maxLine {
                    onLine(String(decoding: pending[0..<maxLine], as: UTF8.self))
                    pending.removeFirst(maxLine)
                }
            }
            if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
            close(fd)
            onEnd()
        }
    }
}
