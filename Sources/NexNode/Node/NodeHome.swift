import Foundation
public import NKeys

/// The node's keys: the server nkey whose public key is the node id, and the curve key deploy environments
/// are sealed to.
public struct NodeIdentity: Sendable {
    public let server: NKeyPair
    public let xkey: NKeyPair

    public init(server: NKeyPair, xkey: NKeyPair) {
        self.server = server
        self.xkey = xkey
    }

    /// Fresh keys that live only as long as the process (tests, throwaway nodes).
    public static func ephemeral() -> NodeIdentity {
        NodeIdentity(server: .generate(.server), xkey: .generate(.curve))
    }
}

/// The node's resource directory (`default_resource_dir`, else `$NEX_HOME`), held for the node's life:
/// an exclusive lock on `node.lock` (so a second node on the same directory is refused) and the identity
/// seeds `node.nk` and `node.xk` (mode 0600), made once and reused on every start.
///
/// The lock is an `flock`, so the kernel drops it when the process dies however it dies (SIGKILL, a crash):
/// there is no stale pid file to clean up.
public final class NodeHome: Sendable {
    /// The resource directory.
    public let directory: String
    public let identity: NodeIdentity
    private let lockDescriptor: Int32

    private init(directory: String, identity: NodeIdentity, lockDescriptor: Int32) {
        self.directory = directory
        self.identity = identity
        self.lockDescriptor = lockDescriptor
    }

    deinit { close(lockDescriptor) }

    /// The resource directory a configuration names.
    public static func directory(for configuration: NodeConfiguration) -> String {
        configuration.defaultResourceDir ?? NexHome.path
    }

    /// Locks the configuration's resource directory and loads the node's identity: the seeds the
    /// configuration gives (`node_seed`, `node_xkey_seed`), else the ones kept in the directory, else new ones
    /// written there.
    public static func open(configuration: NodeConfiguration) throws(NodeHomeError) -> NodeHome {
        let directory = directory(for: configuration)
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw NodeHomeError("cannot make the resource directory \(directory): \(error.localizedDescription)")
        }
        let descriptor = try lock(directory + "/node.lock")
        do throws(NodeHomeError) {
            let server =
                if let seed = configuration.nodeSeed { try key(seed, .server, "node_seed") } else {
                    try loadOrCreate(directory + "/node.nk", .server)
                }
            let xkey =
                if let seed = configuration.nodeXkeySeed { try key(seed, .curve, "node_xkey_seed") } else {
                    try loadOrCreate(directory + "/node.xk", .curve)
                }
            let identity = NodeIdentity(server: server, xkey: xkey)
            return NodeHome(directory: directory, identity: identity, lockDescriptor: descriptor)
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Releases the lock now (it is also released when this value goes away, or the process dies).
    public func release() { _ = flock(lockDescriptor, LOCK_UN) }

    private static func lock(_ path: String) throws(NodeHomeError) -> Int32 {
        let fd = Foundation.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw NodeHomeError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            // Only for the message: without it, no pid is named.
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines)
            close(fd)
            throw NodeHomeError(
                "another node is running on \((path as NSString).deletingLastPathComponent)"
                    + (holder.map { $0.isEmpty ? "" : " (pid \($0))" } ?? "")
                    + ": stop it, or give this node its own default_resource_dir")
        }
        // The holder's pid, for the message above; the lock itself is the flock.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return fd
    }

    private static func key(_ seed: String, _ role: NKeyPrefix, _ setting: String) throws(NodeHomeError) -> NKeyPair {
        let kp: NKeyPair
        do { kp = try NKeyPair(seed: seed) } catch {
            throw NodeHomeError("\(setting) is not a seed: \(error.message)")
        }
        guard kp.prefix == role else {
            throw NodeHomeError("\(setting) holds a \(kp.prefix) seed; a \(role) seed is needed")
        }
        return kp
    }

    /// Reads the seed kept at `path`, or makes one and writes it there (mode 0600, written whole or not
    /// at all).
    static func loadOrCreate(_ path: String, _ role: NKeyPrefix) throws(NodeHomeError) -> NKeyPair {
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            // Attributes unreadable: the read below fails and says why.
            if let mode = (try? fm.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
                throw NodeHomeError(
                    "\(path) holds the node's secret key but others may read it (mode \(String(mode, radix: 8))): "
                        + "chmod 600 \(path)")
            }
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw NodeHomeError("cannot read \(path): \(error.localizedDescription)")
            }
            return try key(text.trimmingCharacters(in: .whitespacesAndNewlines), role, path)
        }
        let kp = NKeyPair.generate(role)
        do {
            try AtomicFile.write(Array((kp.seed! + "\n").utf8), to: path)
        } catch {
            throw NodeHomeError("cannot write \(path): \(error)")
        }
        return kp
    }
}

/// Why the node's resource directory cannot be used.
public struct NodeHomeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Writes files whole or not at all: a temporary file beside the target (mode 0600), synced, then renamed
/// over it. A crash leaves the old file or the new one, never half of either.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw AtomicFileError(path: path, errno: errno) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(temporary)
                throw AtomicFileError(path: path, errno: e)
            }
            written += n
        }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced, rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw AtomicFileError(path: path, errno: e)
        }
        syncDirectory(of: path)
    }

    /// Makes a rename or unlink in `path`'s directory durable (the directory entry itself is data).
    static func syncDirectory(of path: String) {
        let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

struct AtomicFileError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "\(path): \(String(cString: strerror(errno)))" }
}
