#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Applies image layers, in order, to a root file system directory, and never writes outside it.
///
/// - Entry paths are cleaned lexically; one that leaves the root (`..` past it) is refused.
/// - Symbolic links are resolved as if the root were `/`: an absolute link (`/bin/sh -> /bin/busybox`) stays
///   inside. A relative link whose `..` would climb above the root is refused when a write goes through it.
/// - The last component of every write is never followed: an existing entry there is replaced.
/// - Whiteouts remove entries of lower layers only: `.wh.NAME` removes `NAME`; `.wh..wh..opq` empties its
///   directory of what lower layers put there, wherever the marker stands in its layer.
/// - Device nodes and FIFOs are skipped (each is noted); setuid and setgid bits are dropped unless allowed.
public struct LayerUnpacker {
    /// The root file system's directory (absolute, existing).
    public let root: String
    /// Whether setuid and setgid bits are kept.
    public let keepsSetID: Bool
    /// What was skipped, for the node's log: a line each.
    public private(set) var notes: [String] = []

    /// Paths (relative to the root) this layer created: whiteouts leave them alone.
    private var createdByLayer: Set<String> = []
    /// Directories whose mode is set once the layer is applied (a read-only one would refuse what follows), by
    /// their cleaned path under the root: resolved again then, since a later entry may have replaced one.
    private var directoryModes: [[String]: mode_t] = [:]

    /// How many symbolic links one path may go through.
    static let maxLinks = 40
    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"

    public init(root: String, keepsSetID: Bool = false) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        self.keepsSetID = keepsSetID
    }

    /// Applies one layer, read from `tar`.
    public mutating func apply<S: ByteSource>(_ tar: inout TarReader<S>) throws(OCIError) {
        createdByLayer = []
        directoryModes = [:]
        while let entry = try tar.next() {
            try apply(entry, &tar)
        }
        for (parts, mode) in directoryModes {
            guard let name = parts.last else { continue }
            let parent: String
            do { parent = try resolve(Array(parts.dropLast()), entry: parts.joined(separator: "/")) } catch {
                continue  // a later entry replaced a directory on the way: nothing of it is left to set
            }
            // Never through a link: the directory may have been replaced by one since.
            let fd = open(parent + "/" + name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            _ = fchmod(fd, mode)
            close(fd)
        }
    }

    private mutating func apply<S: ByteSource>(_ entry: TarEntry, _ tar: inout TarReader<S>) throws(OCIError) {
        let parts = try Self.clean(entry.path)
        guard let name = parts.last else { return }  // the root itself
        let parentParts = Array(parts.dropLast())
        let parent = try resolve(parentParts, entry: entry.path)
        if name == Self.opaqueMarker {
            try emptyOpaque(parent, relative: parentParts.joined(separator: "/"), entry: entry.path)
            return
        }
        if name.hasPrefix(Self.whiteoutPrefix) {
            let hidden = String(name.dropFirst(Self.whiteoutPrefix.count))
            guard !hidden.isEmpty, hidden != ".", hidden != ".." else {
                throw OCIError.escapes(entry: entry.path, "a whiteout that names no entry")
            }
            let relative = (parentParts + [hidden]).joined(separator: "/")
            if !createdByLayer.contains(relative) { try removeTree(parent + "/" + hidden, entry: entry.path) }
            return
        }
        let path = parent + "/" + name
        let relative = parts.joined(separator: "/")
        var mode = mode_t(entry.mode & 0o7777)
        if !keepsSetID { mode &= ~mode_t(0o6000) }
        switch entry.kind {
        case .directory:
            if !isDirectory(path) {
                try removeTree(path, entry: entry.path)
                guard mkdir(path, 0o755) == 0 else { throw failure(entry, "mkdir") }
            }
            directoryModes[parts] = mode | 0o700
        case .file:
            try removeTree(path, entry: entry.path)
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw failure(entry, "open") }
            defer { close(fd) }
            while true {
                let chunk = try tar.readContent(upTo: 256 << 10)
                if chunk.isEmpty { break }
                let complete = chunk.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                        guard written > 0 else { return false }
                        offset += written
                    }
                    return true
                }
                guard complete else { throw failure(entry, "write") }
            }
            guard fchmod(fd, mode) == 0 else { throw failure(entry, "chmod") }
        case .symlink:
            guard !entry.linkTarget.utf8.contains(0) else {
                throw OCIError.escapes(entry: entry.path, "its link target holds a NUL byte")
            }
            try removeTree(path, entry: entry.path)
            guard symlink(entry.linkTarget, path) == 0 else { throw failure(entry, "symlink") }
        case .hardlink:
            let targetParts = try Self.clean(entry.linkTarget)
            guard let targetName = targetParts.last else {
                throw OCIError.escapes(entry: entry.path, "a hard link to the root")
            }
            let target = try resolve(Array(targetParts.dropLast()), entry: entry.path) + "/" + targetName
            var info = stat()
            guard lstat(target, &info) == 0, info.st_mode & S_IFMT != S_IFDIR else {
                throw OCIError.escapes(
                    entry: entry.path, "a hard link to \(entry.linkTarget), which is not a file here")
            }
            try removeTree(path, entry: entry.path)
            guard link(target, path) == 0 else { throw failure(entry, "link") }
        case .characterDevice, .blockDevice, .fifo:
            notes.append("skipped \(entry.path): device nodes and FIFOs are not made from images")
            return
        case .other(let flag):
            notes.append("skipped \(entry.path): tar entry type \(Character(UnicodeScalar(flag)))")
            return
        }
        createdByLayer.insert(relative)
    }

    // MARK: Paths

    /// The components of an entry's path, cleaned: `.` and empty ones dropped, `..` applied. Refused when
    /// it climbs above the root.
    static func clean(_ path: String) throws(OCIError) -> [String] {
        // C reads a path up to its first NUL: a name with one would not be the name that was checked.
        guard !path.utf8.contains(0) else { throw OCIError.escapes(entry: path, "its path holds a NUL byte") }
        var parts: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                guard !parts.isEmpty else {
                    throw OCIError.escapes(entry: path, "its path leaves the root file system")
                }
                parts.removeLast()
            default: parts.append(String(part))
            }
        }
        return parts
    }

    /// The host path of directory `parts` under the root, following symbolic links as if the root were `/`.
    /// Missing directories are made (0755). Refused when a link would lead above the root, or when the
    /// path goes through something that is not a directory.
    private func resolve(_ parts: [String], entry: String) throws(OCIError) -> String {
        var resolved: [String] = []
        var pending = parts[...]
        var links = 0
        while let part = pending.first {
            pending = pending.dropFirst()
            if part == "." || part.isEmpty { continue }
            if part == ".." {
                // Only a link's target can bring `..` here (entry paths are cleaned first).
                guard !resolved.isEmpty else {
                    throw OCIError.escapes(
                        entry: entry, "it goes through a link that leads outside the root file system")
                }
                resolved.removeLast()
                continue
            }
            let path = root + "/" + (resolved + [part]).joined(separator: "/")
            var info = stat()
            if lstat(path, &info) != 0 {
                guard mkdir(path, 0o755) == 0 else {
                    throw OCIError.escapes(entry: entry, "cannot make directory \(path) (errno \(errno))")
                }
                resolved.append(part)
                continue
            }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                resolved.append(part)
            case S_IFLNK:
                links += 1
                guard links <= Self.maxLinks else {
                    throw OCIError.escapes(entry: entry, "it goes through more than \(Self.maxLinks) links")
                }
                let target = Self.readLink(path)
                if target.hasPrefix("/") { resolved = [] }
                pending = target.split(separator: "/", omittingEmptySubsequences: true).map(String.init) + pending
            default:
                throw OCIError.escapes(entry: entry, "\((resolved + [part]).joined(separator: "/")) is not a directory")
            }
        }
        return resolved.isEmpty ? root : root + "/" + resolved.joined(separator: "/")
    }

    private static func readLink(_ path: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    // MARK: Removing

    /// Removes `path` and, for a directory, everything in it; never follows a link. Nothing there is fine.
    private func removeTree(_ path: String, entry: String) throws(OCIError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            _ = chmod(path, 0o700)  // a read-only directory of a lower layer
            for child in Self.children(of: path) { try removeTree(path + "/" + child, entry: entry) }
            guard rmdir(path) == 0 else {
                throw OCIError.escapes(entry: entry, "cannot remove \(path) (errno \(errno))")
            }
        } else if unlink(path) != 0 {
            throw OCIError.escapes(entry: entry, "cannot remove \(path) (errno \(errno))")
        }
    }

    /// An opaque directory: what lower layers put in it goes (this layer's entries stay).
    private func emptyOpaque(_ directory: String, relative: String, entry: String) throws(OCIError) {
        for child in Self.children(of: directory) {
            let childRelative = relative.isEmpty ? child : relative + "/" + child
            if !createdByLayer.contains(childRelative) { try removeTree(directory + "/" + child, entry: entry) }
        }
    }

    private static func children(of directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let item = readdir(dir) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private func failure(_ entry: TarEntry, _ call: String) -> OCIError {
        OCIError.escapes(entry: entry.path, "\(call) failed (errno \(errno))")
    }
}
