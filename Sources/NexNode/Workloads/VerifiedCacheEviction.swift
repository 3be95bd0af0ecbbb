import Foundation

/// Keeps the verified artifact cache (`artifacts/verified`) under a size limit, as the image cache is: the least
/// recently used copies no workload holds go first. A copy is held while a workload's artifact is a hard link of
/// it (its link count is above one); its stamp file's modification time is when it was last used.
enum VerifiedCacheEviction {
    /// Removes unheld copies, least recently used first, until the cache is within `limitBytes`; returns the
    /// hashes removed. Blocking file work: run it on the blocking-I/O pool.
    @discardableResult
    static func evict(directory verified: String, limitBytes: Int64) -> [String] {
        struct Copy {
            var hash: String
            var bytes: Int64
            var held: Bool
            var used: Int
        }
        // try?: no directory yet is an empty cache.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: verified)) ?? []
        var copies: [Copy] = []
        for name in names where !name.hasSuffix(".stamp") {
            var info = stat()
            guard lstat(verified + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
            var stampInfo = stat()
            let used =
                stat(VerifiedCopyStamp.file(for: verified + "/" + name), &stampInfo) == 0
                ? Int(stampInfo.st_mtim.tv_sec) : Int(info.st_mtim.tv_sec)
            copies.append(Copy(hash: name, bytes: Int64(info.st_size), held: info.st_nlink > 1, used: used))
        }
        var total = copies.reduce(0) { $0 + $1.bytes }
        var removed: [String] = []
        for copy in copies.sorted(by: { $0.used < $1.used }) where total > limitBytes && !copy.held {
            VerifiedCopyStamp.remove(for: verified + "/" + copy.hash)
            guard unlink(verified + "/" + copy.hash) == 0 else { continue }
            total -= copy.bytes
            removed.append(copy.hash)
        }
        return removed
    }

    /// Marks the copy at `path` used now.
    static func touch(_ path: String) {
        // A failure only makes the copy look older to eviction; the copy itself is unaffected.
        _ = utimensat(AT_FDCWD, VerifiedCopyStamp.file(for: path), nil, 0)
    }
}
