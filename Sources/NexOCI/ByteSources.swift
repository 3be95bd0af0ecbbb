import CZlib
import CZstd
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Set from another thread to stop work in progress: a source that reads it ends at its next read.
public final class StopFlag: Sendable {
    private let raised = Atomic(false)

    public init() {}

    /// Stops the work that reads this flag, at its next read.
    public func raise() { raised.store(true, ordering: .relaxed) }
    /// Whether ``raise()`` was called.
    public var isRaised: Bool { raised.load(ordering: .relaxed) }
}

/// A file's bytes, read in order (a layer blob in the cache); ``OCIError/stopped(_:)`` once `stop` is raised.
public final class FileSource: ByteSource {
    private let fd: Int32
    private let stop: StopFlag?

    public init(path: String, stop: StopFlag? = nil) throws(OCIError) {
        self.stop = stop
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OCIError.badArchive("cannot open \(path) (errno \(errno))") }
    }

    deinit { close(fd) }

    public func read(upTo count: Int) throws(OCIError) -> [UInt8] {
        if stop?.isRaised == true { throw OCIError.stopped("the unpack was cancelled") }
        var buffer = [UInt8](repeating: 0, count: count)
        let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, count) }
        guard got >= 0 else { throw OCIError.badArchive("a read failed (errno \(errno))") }
        buffer.removeLast(count - got)
        return buffer
    }
}

/// The decompressed bytes of a gzip stream (one member or several, one after another), read from `source`.
public final class GzipSource<Source: ByteSource>: ByteSource {
    private var source: Source
    /// zlib keeps a pointer to its stream: allocated once, so its address never moves.
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var input: [UInt8] = []
    private var inputOffset = 0
    private var ended = false

    public init(_ source: Source) throws(OCIError) {
        self.source = source
        stream.initialize(to: z_stream())
        // 16 + window bits: a gzip header and trailer, not zlib's.
        guard inflateInit2_(stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            stream.deallocate()
            throw OCIError.badCompression("zlib would not start")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    public func read(upTo count: Int) throws(OCIError) -> [UInt8] {
        guard count > 0 else { return [] }
        var output = [UInt8](repeating: 0, count: count)
        var produced = 0
        while produced == 0, !ended {
            if inputOffset == input.count {
                input = try source.read(upTo: 64 << 10)
                inputOffset = 0
                if input.isEmpty { throw OCIError.badCompression("the gzip stream is cut short") }
            }
            let status = input.withUnsafeMutableBufferPointer { inBuffer in
                output.withUnsafeMutableBufferPointer { outBuffer in
                    stream.pointee.next_in = inBuffer.baseAddress! + inputOffset
                    stream.pointee.avail_in = UInt32(inBuffer.count - inputOffset)
                    stream.pointee.next_out = outBuffer.baseAddress! + produced
                    stream.pointee.avail_out = UInt32(outBuffer.count - produced)
                    let status = inflate(stream, Z_NO_FLUSH)
                    inputOffset = inBuffer.count - Int(stream.pointee.avail_in)
                    produced = outBuffer.count - Int(stream.pointee.avail_out)
                    return status
                }
            }
            switch status {
            case Z_OK, Z_BUF_ERROR:
                continue
            case Z_STREAM_END:
                // Another member may follow; the end is where the input ends.
                if inputOffset == input.count {
                    let more = try source.read(upTo: 64 << 10)
                    if more.isEmpty {
                        ended = true
                        break
                    }
                    input = more
                    inputOffset = 0
                }
                inflateReset(stream)
            default:
                throw OCIError.badCompression("the gzip stream is corrupt (zlib status \(status))")
            }
        }
        output.removeLast(count - produced)
        return output
    }
}

/// The decompressed bytes of a zstd stream (one frame or several, one after another), read from `source`.
public final class ZstdSource<Source: ByteSource>: ByteSource {
    private var source: Source
    private let stream: OpaquePointer
    private var input: [UInt8] = []
    private var inputOffset = 0
    /// Whether the last frame seen was complete: the end of the input is only an end then.
    private var frameEnded = true
    private var ended = false

    /// Decompresses what `source` reads, with a window of at most 128 MiB.
    public init(_ source: Source) throws(OCIError) {
        self.source = source
        guard let stream = ZSTD_createDStream() else { throw OCIError.badCompression("zstd would not start") }
        self.stream = stream
        // A window above 128 MiB would be memory a layer makes the node give (zstd's default limit is the same).
        guard ZSTD_isError(ZSTD_DCtx_setParameter(stream, ZSTD_d_windowLogMax, 27)) == 0 else {
            throw OCIError.badCompression("zstd would not take a window limit")
        }
    }

    deinit { ZSTD_freeDStream(stream) }

    public func read(upTo count: Int) throws(OCIError) -> [UInt8] {
        guard count > 0 else { return [] }
        var output = [UInt8](repeating: 0, count: count)
        var produced = 0
        while produced == 0, !ended {
            if inputOffset == input.count {
                input = try source.read(upTo: 64 << 10)
                inputOffset = 0
                if input.isEmpty {
                    guard frameEnded else { throw OCIError.badCompression("the zstd stream is cut short") }
                    ended = true
                    break
                }
            }
            let result = input.withUnsafeBufferPointer { inBuffer in
                output.withUnsafeMutableBufferPointer { outBuffer in
                    var inDescriptor = ZSTD_inBuffer(src: inBuffer.baseAddress, size: inBuffer.count, pos: inputOffset)
                    var outDescriptor = ZSTD_outBuffer(dst: outBuffer.baseAddress, size: outBuffer.count, pos: produced)
                    let result = ZSTD_decompressStream(stream, &outDescriptor, &inDescriptor)
                    inputOffset = inDescriptor.pos
                    produced = outDescriptor.pos
                    return result
                }
            }
            if ZSTD_isError(result) != 0 {
                if ZSTD_getErrorCode(result) == ZSTD_error_frameParameter_windowTooLarge {
                    throw OCIError.badCompression(
                        "the zstd stream needs a window above 128 MiB: compress the layer without --long")
                }
                let reason = String(cString: ZSTD_getErrorName(result))
                throw OCIError.badCompression("the zstd stream is corrupt (\(reason))")
            }
            // 0: a frame is complete (another may follow); otherwise more input is needed for this one.
            frameEnded = result == 0
        }
        output.removeLast(count - produced)
        return output
    }
}

/// Passes another source's bytes through, hashing and counting them: a layer's uncompressed digest (its
/// `diff_id`) is checked this way as it is unpacked, and a layer that inflates past `limit` bytes is refused.
public final class HashingSource<Source: ByteSource>: ByteSource {
    private var source: Source
    private var hasher = OCIDigest.Hasher()
    public let limit: Int
    /// Bytes read so far.
    public var count: Int { hasher.count }

    public init(_ source: Source, limit: Int = .max) {
        self.source = source
        self.limit = limit
    }

    public func read(upTo count: Int) throws(OCIError) -> [UInt8] {
        let bytes = try source.read(upTo: count)
        hasher.update(bytes)
        guard hasher.count <= limit else {
            throw OCIError.badArchive("it unpacks to more than \(limit >> 20) MiB, the node's limit for one layer")
        }
        return bytes
    }

    /// Reads what is left (a tar's padding after its end) and returns the digest of everything.
    public func drain() throws(OCIError) -> OCIDigest {
        while !(try read(upTo: 64 << 10)).isEmpty {}
        return hasher.finish()
    }
}
