import Foundation
import Synchronization

/// `--logger std`: every line to standard error, the Unix place for diagnostics, so what `nex` prints on
/// standard output (the node's id, the server it started) stays machine-readable.
public struct StandardLogSink: NodeLogSink {
    public init() {}

    public func write(_ line: String, isError: Bool) {
        FileDescriptorWriter.writeAll(Array((line + "\n").utf8), to: STDERR_FILENO)
    }
}

/// `--logger file`: `nex.log`, and `nex.err` for warnings and worse, appended to (earlier runs' lines stay).
public final class FileLogSink: NodeLogSink {
    private let output: Int32
    private let errors: Int32

    /// Opens (or creates) `nex.log` and `nex.err` in `directory`.
    public init(directory: String) throws(FileLogSinkError) {
        let open: (String) throws(FileLogSinkError) -> Int32 = { name throws(FileLogSinkError) in
            let path = directory + "/" + name
            let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else {
                throw FileLogSinkError(
                    description: "cannot open \(path) for the file logger: \(String(cString: strerror(errno)))")
            }
            return fd
        }
        output = try open("nex.log")
        do { errors = try open("nex.err") } catch {
            close(output)
            throw error
        }
    }

    deinit {
        close(output)
        close(errors)
    }

    public func write(_ line: String, isError: Bool) {
        // One write per line on an O_APPEND descriptor: lines from several threads never interleave.
        FileDescriptorWriter.writeAll(Array((line + "\n").utf8), to: isError ? errors : output)
    }
}

/// Why the file logger could not start.
public struct FileLogSinkError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

enum FileDescriptorWriter {
    /// Writes all of `bytes` (retrying short writes and EINTR); a failure drops the line, since a logger has
    /// nowhere left to say so.
    static func writeAll(_ bytes: [UInt8], to fd: Int32) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Foundation.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0, errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
