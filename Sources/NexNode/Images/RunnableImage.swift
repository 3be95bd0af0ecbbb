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
        guard workingDirectory.hasPrefix("/"), !workingDirectory.split(separator: "/").contains("..") else {
            throw NexError(.invalidRequest, "the image's WorkingDir \(workingDirectory) is not an absolute path")
        }
        self.workingDirectory = workingDirectory
        executable = try Self.resolve(
            program, in: image.rootfs, path: environment["PATH"] ?? Self.defaultPath, from: workingDirectory)
        arguments = Array(command.dropFirst())
        let (uid, gid) = try Self.user(settings?.User ?? "", in: image.rootfs)
        root = ImageRoot(
            rootfs: image.rootfs, uid: uid, gid: gid,
            writableDirectories: try Self.writableWorkingDirectory(workingDirectory, in: image.rootfs))
    }

    /// A program name found on the image's PATH (as exec does), or a path as given.
    static func resolve(
        _ program: String, in rootfs: String, path: String, from directory: String
    ) throws(NexError) -> String {
        if program.hasPrefix("/") { return program }
        if program.contains("/") { return (directory == "/" ? "" : directory) + "/" + program }
        for entry in path.split(separator: ":") where entry.hasPrefix("/") && !entry.contains("..") {
            let candidate = entry + "/" + program
            var info = stat()
            // lstat: a link in the image points inside the image, not at this host's file of that name.
            if lstat(rootfs + candidate, &info) == 0 { return candidate }
        }
        throw NexError(.invalidRequest, "the image has no \(program) on its PATH (\(path)): name the program by path")
    }

    /// The user and group ids of an image's `User` (`name`, `uid`, `name:group` or `uid:gid`; empty is root).
    static func user(_ user: String, in rootfs: String) throws(NexError) -> (UInt32, UInt32) {
        guard !user.isEmpty else { return (0, 0) }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = entries(rootfs + "/etc/passwd")
        let uid: UInt32
        var gid: UInt32 = 0
        if let number = UInt32(parts[0]) {
            uid = number
            gid = passwd.first { $0.count > 3 && $0[2] == parts[0] }.flatMap { UInt32($0[3]) } ?? number
        } else if let entry = passwd.first(where: { $0.count > 3 && $0[0] == parts[0] }), let number = UInt32(entry[2])
        {
            uid = number
            gid = UInt32(entry[3]) ?? 0
        } else {
            throw NexError(.invalidRequest, "the image's User \(parts[0]) is not in its /etc/passwd")
        }
        if parts.count == 2 {
            if let number = UInt32(parts[1]) {
                gid = number
            } else if let entry = entries(rootfs + "/etc/group").first(where: { $0.count > 2 && $0[0] == parts[1] }),
                let number = UInt32(entry[2])
            {
                gid = number
            } else {
                throw NexError(.invalidRequest, "the image's group \(parts[1]) is not in its /etc/group")
            }
        }
        return (uid, gid)
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
                guard mkdir(host, 0o755) == 0 else {
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

    /// The colon-separated fields of each line of a passwd-style file (none when it is missing).
    private static func entries(_ path: String) -> [[String]] {
        // try?: an image without the file has no names in it.
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").map {
            $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }
}
