import Foundation

/// Whether a native artifact can run in a sandbox, whose root holds no shared libraries, no loader and no
/// interpreters: it must be a statically linked ELF executable.
public enum StaticExecutable {
    /// Nil when `path` is a static ELF executable; otherwise why it cannot run sandboxed.
    public static func problem(at path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "cannot read the artifact" }
        defer { try? handle.close() }  // read only: a failed close loses nothing
        let header = [UInt8]((try? handle.read(upToCount: 64)) ?? Data())  // unreadable: judged not ELF below
        if header.starts(with: Array("#!".utf8)) {
            return "a script needs an interpreter, which the sandbox does not have: deploy a static executable"
        }
        guard header.count >= 64, header.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else {
            return "not an ELF executable"
        }
        guard header[4] == 2, header[5] == 1 else { return "not a 64-bit little-endian ELF executable" }
        func integer(_ offset: Int, _ size: Int, in bytes: [UInt8]) -> Int {
            (0..<size).reversed().reduce(0) { $0 << 8 | Int(bytes[offset + $1]) }
        }
        let programHeaders = integer(32, 8, in: header)
        let entrySize = integer(54, 2, in: header)
        let count = integer(56, 2, in: header)
        // A seek or read that fails means the file is shorter than its header says.
        guard entrySize >= 4, count < 4096, (try? handle.seek(toOffset: UInt64(programHeaders))) != nil,
            let table = try? handle.read(upToCount: entrySize * count), table.count == entrySize * count
        else { return "a truncated ELF file" }
        let bytes = [UInt8](table)
        let ptInterp = 3
        for index in 0..<count where integer(index * entrySize, 4, in: bytes) == ptInterp {
            return "dynamically linked (it needs a loader and shared libraries, which the sandbox does not have): "
                + "build it as a static executable (Swift: -static-executable; C: -static; Go: CGO_ENABLED=0)"
        }
        return nil
    }
}
