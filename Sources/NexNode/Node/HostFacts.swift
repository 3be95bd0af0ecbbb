import Foundation
import NexModels

/// Facts about the machine a node runs on, in the forms Nex reports them.
enum HostFacts {
    /// Go's names (`runtime.GOOS`/`GOARCH`), which Nex tags use.
    static var os: String {
        #if os(Linux)
            "linux"
        #elseif os(macOS)
            "darwin"
        #else
            "unknown"
        #endif
    }

    static var arch: String {
        #if arch(x86_64)
            "amd64"
        #elseif arch(arm64)
            "arm64"
        #else
            "unknown"
        #endif
    }

    static var cpuCount: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// MemTotal, MemFree and MemAvailable from /proc/meminfo, in kB.
    static func memory() -> MemoryStat? {
        // No /proc/meminfo: the memory is not reported.
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            if parts.count >= 2, let v = Int(parts[1]) { values[String(parts[0])] = v }
        }
        guard let total = values["MemTotal"], let free = values["MemFree"] else { return nil }
        return MemoryStat(total: total, free: free, available: values["MemAvailable"] ?? free)
    }
}
