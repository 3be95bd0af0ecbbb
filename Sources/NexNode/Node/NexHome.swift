import Foundation

/// Where Nex keeps its files on this machine: `$NEX_HOME`, else `~/.nex` (developer keys, embedded server
/// data, downloaded artifacts).
public enum NexHome {
    public static var path: String {
        ProcessInfo.processInfo.environment["NEX_HOME"]
            ?? (FileManager.default.homeDirectoryForCurrentUser.path + "/.nex")
    }
}
