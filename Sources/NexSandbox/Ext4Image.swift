import Foundation
import NexProcess

/// An ext4 file system image made from a directory with `mkfs.ext4 -d`: no loop mount, no root needed, owners
/// and modes copied from the files.
enum Ext4Image {
    /// Where `mkfs.ext4` is, if installed.
    static func findMkfs() -> String? {
        ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].first(where: FileManager.default.isExecutableFile(atPath:))
    }

    /// Writes an image of `directory` to `output` (replaced), `sizeMiB` large, labelled `label`; `inodes`
    /// overrides mkfs's own count (a tree of many small files needs more than its default ratio gives). With
    /// `owner`, the files this process owns are that user's and group's in the image (mkfs runs in a user
    /// namespace that maps this process's user to them), as the namespace sandbox shows them.
    static func make(
        from directory: String, to output: String, label: String, sizeMiB: Int, inodes: Int? = nil,
        readOnly: Bool = false, owner: (uid: UInt32, gid: UInt32)? = nil
    ) async throws {
        guard let mkfs = findMkfs() else { throw SandboxError("mkfs.ext4 not found: apt-get install e2fsprogs") }
        var arguments = ["-q", "-F", "-L", label, "-d", directory]
        if let inodes { arguments += ["-N", String(inodes)] }
        // Mounted read-only, an image needs no journal and no blocks kept for root.
        if readOnly { arguments += ["-O", "^has_journal", "-m", "0"] }
        arguments += [output, "\(sizeMiB)M"]
        var executable = mkfs
        if let owner, owner.uid != getuid() || owner.gid != getgid() {
            guard let unshare = ["/usr/bin/unshare", "/bin/unshare"].first(where: FileManager.default.isExecutableFile)
            else {
                throw SandboxError(
                    "unshare (util-linux 2.38 or later) is needed to give an image's files its user on a VM disk: "
                        + "apt-get install util-linux")
            }
            executable = unshare
            // --keep-caps: mkfs reads every file, mode 0000 ones included, as the image's user would not.
            arguments = ["--map-user=\(owner.uid)", "--map-group=\(owner.gid)", "--keep-caps", mkfs] + arguments
        }
        try? FileManager.default.removeItem(atPath: output)  // none is fine; one that stays is overwritten by -F
        let log = output + ".mkfs.log"
        let logFD = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw SandboxError("cannot write \(log): \(String(cString: strerror(errno)))") }
        defer { unlink(log) }
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(
                executable: executable, arguments: arguments,
                environment: ["PATH": "/usr/sbin:/sbin:/usr/bin:/bin"],
                stdout: .descriptor(logFD), stderr: .descriptor(logFD))
            close(logFD)
        } catch {
            close(logFD)
            throw error
        }
        let termination = await child.wait()
        guard termination == .exited(0) else {
            // No log: the failure is still reported, only without mkfs's words.
            let errors = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw SandboxError("mkfs.ext4 \(termination): \(errors.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// What a tree holds: its entries and the bytes its files take in 4 KiB blocks (hard links counted once).
    static func measure(_ directory: String) throws -> (entries: Int, bytes: Int) {
        guard let walker = FileManager.default.enumerator(atPath: directory) else {
            throw SandboxError("cannot read \(directory)")
        }
        var entries = 1
        var bytes = 4096
        var seen = Set<UInt64>()
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat(directory + "/" + relative, &info) == 0 else { continue }  // gone meanwhile: not copied
            entries += 1
            if info.st_nlink > 1, (info.st_mode & S_IFMT) == S_IFREG, !seen.insert(UInt64(info.st_ino)).inserted {
                continue
            }
            bytes += (Int(info.st_size) + 4095) & ~4095
        }
        return (entries, bytes)
    }
}
