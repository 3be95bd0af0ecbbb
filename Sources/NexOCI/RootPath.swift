#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Paths inside an unpacked image, resolved as the image's own programs would see them: links followed as if
/// the root were `/`, never onto the host (an image's `/bin -> /usr/bin` means its own `/usr/bin`).
public enum RootPath {
    /// How many links one path may go through.
    static let maxLinks = 40

    /// The host path of `path` inside `root`, with every link on the way (the last one too, when `followLast`)
    /// resolved inside it; nil when something on the way is missing or the links loop.
    public static func resolve(_ path: String, in root: String, followLast: Bool = true) -> String? {
        var pending = Array(path.split(separator: "/").map(String.init).reversed())
        var resolved: [String] = []
        var links = 0
        while let component = pending.popLast() {
            if component == "." || component.isEmpty { continue }
            if component == ".." {
                _ = resolved.popLast()  // `..` at the root stays at the root, as it does in /
                continue
            }
            let candidate = root + "/" + (resolved + [component]).joined(separator: "/")
            var info = stat()
            guard lstat(candidate, &info) == 0 else { return nil }
            guard (info.st_mode & S_IFMT) == S_IFLNK, followLast || !pending.isEmpty else {
                resolved.append(component)
                continue
            }
            links += 1
            guard links <= maxLinks, let target = readLink(candidate) else { return nil }
            if target.hasPrefix("/") { resolved = [] }
            pending += target.split(separator: "/").map(String.init).reversed()
        }
        return root + (resolved.isEmpty ? "" : "/" + resolved.joined(separator: "/"))
    }

    /// A regular file's bytes inside `root`, at most `limit`; nil when it is missing, not a regular file (a device
    /// or a FIFO an image put there), or larger.
    public static func readFile(_ path: String, in root: String, limit: Int) -> [UInt8]? {
        guard let host = resolve(path, in: root) else { return nil }
        let fd = open(host, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, Int(info.st_size) <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard got > 0 else { break }
            offset += got
        }
        return Array(bytes.prefix(offset))
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, Int(PATH_MAX))
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
