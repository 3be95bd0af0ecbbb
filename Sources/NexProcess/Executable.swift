import Foundation

/// Facts about the running executable.
public enum Executable {
    /// The directory of this process's executable (from `/proc/self/exe`), where sibling tools such as
    /// `nex-agent` are installed.
    public static var directory: String {
        // No /proc (not Linux): the path it was started by.
        let path =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        return URL(fileURLWithPath: path).deletingLastPathComponent().path
    }
}
