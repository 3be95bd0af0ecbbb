import Foundation
import NexModels
import NexOCI
import NexSandbox

/// What an agent runs for a container image, as `docker run IMAGE ARGS` would: the image's Entrypoint, then
/// the deploy's argv (or else the image's Cmd); the image's Env under the deploy's environment; its WorkingDir
/// and User (a name looked up in the image's `/etc/passwd`).
struct RunnableImage: Sendable {
    /// The manifest it came from: pinned in the cache while the workload runs.
    var manifestDigest: OCIDigest
    /// Bytes of its unpacked root: what the node's limits count.
    var bytes: Int64
    var root: ImageRoot
    /// The program, as a path inside the image.
    var executable: String
    var arguments: [String]
    /// The image's Env.
    var environment: [String: String]
    var workingDirectory: String

    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    init(_ image: PulledImage, argv: [String]?) throws(NexError) {
        let settings = image.config.config
        manifestDigest = image.manifestDigest
        bytes = image.bytes
        var environment: [String: String] = [:]
        for entry in settings?.Env ?? [] {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        self.environment = environment
        let deployArguments = argv ?? []
        let command = (settings?.Entrypoint ?? []) + (deployArguments.isEmpty ? settings?.Cmd ?? [] : deployArguments)
        guard let program = command.first, !program.isEmpty else {
            throw NexError(
                .invalidRequest,
                "the image names no Entrypoint or Cmd, and the deploy no argv: give the program to run as argv")
        }
        let workingDirectory = settings?.WorkingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        guard workingDirectory.hasPrefix("/"),
            !workingDirectory.split(separator: "/").contains(where: { $0 == ".." || $0 == "." })
        else {
            throw NexError(.invalidRequest, "the image's WorkingDir \(workingDirectory) is not an absolute path")
        }
        if let top = workingDirectory.split(separator: "/").first, ImageRoot.mountPoints.contains(String(top)) {
            throw NexError(
                .invalidRequest,
                "the image's WorkingDir \(workingDirectory) is under /\(top), where the sandbox mounts its own: "
                    + "set another WorkingDir")
        }
        self.workingDirectory = workingDirectory
        executable = try Self.resolve(
            program, in: image.rootfs, path: environment["PATH"] ?? Self.defaultPath, from: workingDirectory)
        arguments = Array(command.dropFirst())
        let (uid, gid, home) = try Self.user(settings?.User ?? "", in: image.rootfs)
        // HOME as runc sets it: the user's home from the image's /etc/passwd, else `/`.
        if self.environment["HOME"] == nil { self.environment["HOME"] = home ?? "/" }
        root = ImageRoot(
            rootfs: image.rootfs, uid: uid, gid: gid,
            writableDirectories: try Self.writableWorkingDirectory(workingDirectory, in: image.rootfs),
            maskedFiles: try Self.preloadMask(in: image.rootfs))
    }

    /// A program name found on the image's PATH (as exec does), or a path as given.
    static func resolve(
        _ program: String, in rootfs: String, path: String, from directory: String
    ) throws(NexError) -> String {
        if program.hasPrefix("/") { return program }
        if program.contains("/") { return (directory == "/" ? "" : directory) + "/" + program }
        for entry in path.split(separator: ":") where entry.hasPrefix("/") {
            let candidate = entry + "/" + program
            // Resolved inside the image: a link there points into the image, not at this host's file of that name.
            if let host = RootPath.resolve(candidate, in: rootfs) {
                var info = stat()
                if stat(host, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG { return candidate }
            }
        }
        throw NexError(.invalidRequest, "the image has no \(program) on its PATH (\(path)): name the program by path")
    }

    /// The user and group ids of an image's `User` (`name`, `uid`, `name:group` or `uid:gid`; empty is root),
    /// and the home its /etc/passwd entry names.
    static func user(_ user: String, in rootfs: String) throws(NexError) -> (UInt32, UInt32, String?) {
        let passwd = entries("/etc/passwd", in: rootfs)
        func home(_ entry: [String]?) -> String? { entry.flatMap { $0.count > 5 && !$0[5].isEmpty ? $0[5] : nil } }
        guard !user.isEmpty else { return (0, 0, home(passwd.first { $0.count > 3 && $0[2] == "0" })) }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        let uid: UInt32
        var gid: UInt32 = 0
        var matched: [String]?
        if let number = UInt32(parts[0]) {
            uid = number
            matched = passwd.first { $0.count > 3 && $0[2] == parts[0] }
            // Without an entry for it, group 0 (as runc does).
            gid = passwd.first { $0.count > 3 && $0[2] == parts[0] }.flatMap { UInt32($0[3]) } ?? 0
        } else if let entry = passwd.first(where: { $0.count > 3 && $0[0] == parts[0] }), let number = UInt32(entry[2])
        {
            uid = number
            gid = UInt32(entry[3]) ?? 0
            matched = entry
        } else {
            throw NexError(.invalidRequest, "the image's User \(parts[0]) is not in its /etc/passwd")
        }
        if parts.count == 2 {
            if let number = UInt32(parts[1]) {
                gid = number
            } else if let entry = entries("/etc/group", in: rootfs).first(where: { $0.count > 2 && $0[0] == parts[1] }),
                let number = UInt32(entry[2])
            {
                gid = number
            } else {
                throw NexError(.invalidRequest, "the image's group \(parts[1]) is not in its /etc/group")
            }
        }
        return (uid, gid, home(matched))
    }

    /// A working directory the image leaves empty (or lacks: it is made in the cache) gets a private tmpfs, so
    /// the program can write there; one with the image's files stays read-only, as the rest of the root. The
    /// path is walked without following links: a link in the image points inside the image, never at the host.
    private static func writableWorkingDirectory(_ directory: String, in rootfs: String) throws(NexError) -> [String] {
        var host = rootfs
        var made = false
        for component in directory.split(separator: "/") {
            host += "/" + component
            var info = stat()
            if lstat(host, &info) != 0 {
                // EEXIST: another deploy of this image made it meanwhile.
                guard mkdir(host, 0o755) == 0 || errno == EEXIST else {
                    throw NexError(.storage, "cannot make the image's WorkingDir \(directory) (errno \(errno))")
                }
                made = true
            } else if (info.st_mode & S_IFMT) != S_IFDIR {
                return []  // a link (or a file): left as the image has it, read-only
            }
        }
        guard !made else { return [directory] }
        // try?: an unreadable directory is left as the image has it.
        let isEmpty = (try? FileManager.default.contentsOfDirectory(atPath: host))?.isEmpty ?? false
        return directory != "/" && isEmpty ? [directory] : []
    }

    /// `/etc/ld.so.preload` hidden when the image has one: the dynamic loader reads it for every program, the
    /// agent's included, and the agent holds the link to the node. One that is not a plain file is refused.
    private static func preloadMask(in rootfs: String) throws(NexError) -> [String] {
        // Resolved inside the image: its /etc may be a link to another of its directories.
        guard let host = RootPath.resolve("/etc/ld.so.preload", in: rootfs, followLast: false) else { return [] }
        var info = stat()
        guard host == rootfs + "/etc/ld.so.preload", lstat(host, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw NexError(
                .invalidRequest, "the image's /etc/ld.so.preload is not a plain file in /etc: remove it from the image")
        }
        return ["/etc/ld.so.preload"]
    }

    /// The colon-separated fields of each line of a passwd-style file inside the image (none when it is missing,
    /// not a regular file, or past 1 MiB).
    private static func entries(_ path: String, in rootfs: String) -> [[String]] {
        guard let bytes = RootPath.readFile(path, in: rootfs, limit: 1 << 20) else { return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        return text.split(separator: "\n").map {
            $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }
}
