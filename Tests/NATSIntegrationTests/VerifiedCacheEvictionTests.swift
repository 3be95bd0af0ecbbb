import Foundation
import Testing

@testable import NexNode

/// The verified artifact cache is kept under the node's cache limit: the least recently used copies no workload
/// holds go first; a held copy (a workload's artifact links it) stays whatever its age.
@Suite struct VerifiedCacheEvictionTests {
    @Test func theOldestUnheldCopiesGoFirst() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("verified-\(UUID().uuidString)").path
        let verified = base + "/verified"
        try FileManager.default.createDirectory(atPath: verified, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }  // best effort: a temp folder
        // Four copies of 1000 bytes, used at 100, 200, 300 and 400 seconds past the epoch.
        for (index, hash) in ["old", "held", "middle", "new"].enumerated() {
            let path = verified + "/" + hash
            try Data(repeating: UInt8(index), count: 1000).write(to: URL(fileURLWithPath: path))
            try VerifiedCopyStamp.record(for: path)
            var times = [timespec(tv_sec: 0, tv_nsec: 0), timespec(tv_sec: 100 * (index + 1), tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, VerifiedCopyStamp.file(for: path), &times, 0) == 0)
        }
        // A workload's artifact links the second oldest.
        #expect(link(verified + "/held", base + "/workload-artifact") == 0)

        // Room for two: the oldest unheld (old, then middle) go; held stays though it is older than middle.
        let removed = VerifiedCacheEviction.evict(directory: verified, limitBytes: 2000)
        #expect(removed == ["old", "middle"])
        let left = try FileManager.default.contentsOfDirectory(atPath: verified).sorted()
        #expect(left == ["held", "held.stamp", "new", "new.stamp"])
        // Within the limit: nothing more goes.
        #expect(VerifiedCacheEviction.evict(directory: verified, limitBytes: 2000).isEmpty)
    }
}
