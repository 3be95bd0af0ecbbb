import Foundation

/// What a verified artifact copy looked like when it was verified: its inode, size and modification time,
/// kept beside it (`<hash>.stamp`). A redeploy that finds the copy unchanged links it without reading it
/// again; a copy that was replaced or written to no longer matches and is hashed again. (A restart always
/// hashes again.)
struct VerifiedCopyStamp: Equatable, Sendable {
    var inode: UInt64
    var size: Int
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// The stamp of the file at `path` as it is now; nil when there is no such file.
    init?(ofFileAt path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        inode = UInt64(info.st_ino)
        size = Int(info.st_size)
        modifiedSeconds = Int(info.st_mtim.tv_sec)
        modifiedNanoseconds = Int(info.st_mtim.tv_nsec)
    }

    /// The stamp recorded for the copy at `path`; nil when none was (or it is unreadable).
    init?(recordedFor path: String) {
        // None or unreadable: the copy is hashed again, which is only slower.
        guard let text = try? String(contentsOfFile: Self.file(for: path), encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard fields.count == 4, fields[0] >= 0 else { return nil }
        inode = UInt64(fields[0])
        size = fields[1]
        modifiedSeconds = fields[2]
        modifiedNanoseconds = fields[3]
    }

    /// Records the copy at `path` as it is now.
    static func record(for path: String) throws {
        guard let stamp = VerifiedCopyStamp(ofFileAt: path) else {
            throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: path])
        }
        let text = "\(stamp.inode) \(stamp.size) \(stamp.modifiedSeconds) \(stamp.modifiedNanoseconds)\n"
        try text.write(toFile: file(for: path), atomically: true, encoding: .utf8)
    }

    /// Forgets the stamp of the copy at `path`.
    static func remove(for path: String) { unlink(file(for: path)) }

    static func file(for path: String) -> String { path + ".stamp" }
}
