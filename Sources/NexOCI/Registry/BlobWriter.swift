import Foundation
import NIOCore
import NIOPosix

/// A blob arriving into a file: counted and hashed as it is written.
final class BlobWriter {
    private var fd: Int32 = -1
    private var hasher = OCIDigest.Hasher()
    private(set) var count: Int64 = 0

    /// (Re)starts the file at `path`, empty.
    func open(_ path: String) throws(OCIError) {
        close()
        fd = Foundation.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OCIError.storage("cannot create \(path): \(String(cString: strerror(errno)))") }
        hasher = OCIDigest.Hasher()
        count = 0
    }

    func write(_ chunk: ByteBuffer) throws(OCIError) {
        guard fd >= 0 else { throw OCIError.storage("a blob's body came before its file was opened") }
        try chunk.readableBytesView.withUnsafeBytes { (bytes) throws(OCIError) in
            var offset = 0
            while offset < bytes.count {
                let wrote = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if wrote < 0, errno == EINTR { continue }
                guard wrote > 0 else { throw OCIError.storage("a write failed: \(String(cString: strerror(errno)))") }
                offset += wrote
            }
        }
        hasher.update(chunk.readableBytesView)
        count += Int64(chunk.readableBytes)
    }

    /// Flushes the file to disk, on a pool thread (an fsync can take tens of milliseconds).
    func finish() async throws(OCIError) {
        guard fd >= 0 else { throw OCIError.storage("no blob arrived") }
        let fd = fd
        let failed: Int32?
        do {
            failed = try await NIOThreadPool.singleton.runIfActive { fsync(fd) == 0 ? nil : errno }
        } catch {
            throw OCIError.stopped("the blob was not flushed: \(error)")
        }
        if let failed { throw OCIError.storage("fsync failed: \(String(cString: strerror(failed)))") }
    }

    var digest: OCIDigest { hasher.finish() }

    func close() {
        if fd >= 0 { Foundation.close(fd) }
        fd = -1
    }
}
