import Foundation

/// Memory, CPU and process-count limits for one sandbox, as a cgroup under the node's own (cgroup v1 and v2).
///
/// The sandbox's first process joins the cgroup between fork and exec (``procsFiles``), so everything it
/// starts is counted from its first instruction.
public struct Cgroups: Sendable {
    /// Which hierarchy this machine uses for the controllers we need.
    public enum Version: String, Sendable {
        case v1, v2
    }

    /// Limits of one sandbox.
    public struct Limits: Sendable, Equatable {
        public var memoryBytes: Int
        /// CPUs' worth of time per period (1 = one full core).
        public var cpus: Int
        public var pids: Int
        public init(memoryBytes: Int, cpus: Int, pids: Int) {
            self.memoryBytes = memoryBytes
            self.cpus = cpus
            self.pids = pids
        }
    }

    public let version: Version
    let root: String
    /// The node's own cgroup path per controller (v1), or its one path (v2, key "").
    let ownPaths: [String: String]

    /// Finds the hierarchy (`root`: where cgroupfs is mounted); nil when neither v1 controllers nor a v2
    /// hierarchy with memory, cpu and pids is available.
    public static func detect(root: String = "/sys/fs/cgroup", selfCgroup: String? = nil) -> Cgroups? {
        // Unreadable: the node's own cgroup is taken to be the root.
        let own = selfCgroup ?? (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        var paths: [String: String] = [:]
        for line in own.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            for controller in parts[1].split(separator: ",") { paths[String(controller)] = String(parts[2]) }
            if parts[1].isEmpty { paths[""] = String(parts[2]) }
        }
        let fm = FileManager.default
        let v1 = ["memory", "cpu", "pids"]
        if v1.allSatisfy({ fm.fileExists(atPath: "\(root)/\($0)/cgroup.procs") }) {
            return Cgroups(version: .v1, root: root, ownPaths: paths)
        }
        // No such file: not a v2 hierarchy (nil below).
        let controllers = (try? String(contentsOfFile: "\(root)/cgroup.controllers", encoding: .utf8)) ?? ""
        let available = Set(controllers.split(whereSeparator: \.isWhitespace).map(String.init))
        if available.isSuperset(of: ["memory", "cpu", "pids"]) {
            return Cgroups(version: .v2, root: root, ownPaths: paths)
        }
        return nil
    }

    /// The directories of the sandbox `name` (one per controller on v1).
    func directories(_ name: String) -> [(controller: String, path: String)] {
        switch version {
        case .v1:
            return v1Controllers.map { controller in
                let own = ownPaths[controller] ?? "/"
                return (controller, "\(root)/\(controller)\(own == "/" ? "" : own)/nex/\(name)")
            }
        case .v2:
            let own = ownPaths[""] ?? "/"
            return [("", "\(root)\(own == "/" ? "" : own)/nex/\(name)")]
        }
    }

    /// The v1 hierarchies a sandbox joins: the three with limits, plus `cpuacct` (no limits, it counts CPU
    /// time) where it is mounted apart from `cpu`; where they share a mount, `cpu` counts already.
    private var v1Controllers: [String] {
        let cpuCounts = FileManager.default.fileExists(atPath: "\(root)/cpu/cpuacct.usage")
        let cpuacct = FileManager.default.fileExists(atPath: "\(root)/cpuacct/cgroup.procs")
        return ["memory", "cpu", "pids"] + (cpuacct && !cpuCounts ? ["cpuacct"] : [])
    }

    /// What sandbox `name` uses now: its memory (page cache included, as the limit counts it) and the CPU
    /// time of everything in it so far. Nil when its cgroup is gone or cannot be read.
    public func usage(_ name: String) -> SandboxUsage? {
        var memory: Int?
        var cpuNanoseconds: Int?
        for (controller, path) in directories(name) {
            switch (version, controller) {
            case (.v1, "memory"):
                memory = Self.readInteger(path + "/memory.usage_in_bytes")
            case (.v1, "cpu"), (.v1, "cpuacct"):
                cpuNanoseconds = Self.readInteger(path + "/cpuacct.usage") ?? cpuNanoseconds
            case (.v2, _):
                memory = Self.readInteger(path + "/memory.current")
                // Unreadable: the CPU time is left unknown.
                let stat = (try? String(contentsOfFile: path + "/cpu.stat", encoding: .utf8)) ?? ""
                for line in stat.split(separator: "\n") where line.hasPrefix("usage_usec ") {
                    cpuNanoseconds = Int(line.dropFirst("usage_usec ".count)).map { $0 * 1000 }
                }
            default:
                break
            }
        }
        guard let memory else { return nil }
        return SandboxUsage(memoryBytes: memory, cpuSeconds: Double(cpuNanoseconds ?? 0) / 1e9)
    }

    private static func readInteger(_ file: String) -> Int? {
        // A cgroup that is gone has no files: nil, as usage(_:) documents.
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Makes the cgroup of sandbox `name` with `limits`; returns the `cgroup.procs` files its first process
    /// writes itself into.
    public func create(_ name: String, limits: Limits) throws -> [String] {
        let fm = FileManager.default
        var procs: [String] = []
        for (controller, path) in directories(name) {
            if version == .v2 {
                // Controllers must be enabled on every level between the node's cgroup and the sandbox's.
                let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
                try makeDirectory(parent)
                for level in [URL(fileURLWithPath: parent).deletingLastPathComponent().path, parent] {
                    try write("+memory +cpu +pids", to: level + "/cgroup.subtree_control")
                }
            }
            if controller == "cpuacct" {
                // Only counts CPU time for the metrics: a hierarchy this node may not write is no reason to
                // refuse a sandbox.
                do { try makeDirectory(path) } catch { continue }
                procs.append(path + "/cgroup.procs")
                continue
            }
            try makeDirectory(path)
            switch (version, controller) {
            case (.v1, "memory"):
                try write(String(limits.memoryBytes), to: path + "/memory.limit_in_bytes")
                // Swap counts too where the kernel accounts it (otherwise the limit only moves pages to swap).
                if fm.fileExists(atPath: path + "/memory.memsw.limit_in_bytes") {
                    try write(String(limits.memoryBytes), to: path + "/memory.memsw.limit_in_bytes")
                }
            case (.v1, "cpu"):
                try write("100000", to: path + "/cpu.cfs_period_us")
                try write(String(limits.cpus * 100_000), to: path + "/cpu.cfs_quota_us")
            case (.v1, "pids"):
                try write(String(limits.pids), to: path + "/pids.max")
            case (.v2, _):
                try write(String(limits.memoryBytes), to: path + "/memory.max")
                if fm.fileExists(atPath: path + "/memory.swap.max") { try write("0", to: path + "/memory.swap.max") }
                try write("\(limits.cpus * 100_000) 100000", to: path + "/cpu.max")
                try write(String(limits.pids), to: path + "/pids.max")
            default:
                break
            }
            procs.append(path + "/cgroup.procs")
        }
        return procs
    }

    /// Whether this process may make sandbox cgroups (root, or a delegated hierarchy): makes and removes one.
    public func check() async -> Result<Void, SandboxError> {
        // Unique per check: nodes in one process (tests) check at once, and one's removal must not pull the
        // directory from under another's (ENOENT on memory.limit_in_bytes).
        let probe = "probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            _ = try create(probe, limits: Limits(memoryBytes: 64 << 20, cpus: 1, pids: 16))
            await remove(probe)
            return .success(())
        } catch let error as SandboxError {
            await remove(probe)
            return .failure(error)
        } catch {
            await remove(probe)
            return .failure(SandboxError("\(error)"))
        }
    }

    /// Kills what is left in sandbox `name` and removes its cgroup (the kernel refuses with EBUSY for a
    /// moment after the last process exits: retried).
    public func remove(_ name: String) async {
        for (_, path) in directories(name) {
            for _ in 0..<50 {
                // Gone already: nothing left to kill.
                if let pids = try? String(contentsOfFile: path + "/cgroup.procs", encoding: .utf8) {
                    for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
                }
                if rmdir(path) == 0 || errno == ENOENT { break }
                // Cancelled: the remaining tries run at once; removing the cgroup still matters.
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// mkdir -p, with the reason in words when the kernel refuses.
    private func makeDirectory(_ path: String) throws {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw SandboxError("cannot create \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func write(_ value: String, to file: String) throws {
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError("cannot open \(file): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        guard bytes.withUnsafeBytes({ Foundation.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw SandboxError("cannot write \(value) to \(file): \(String(cString: strerror(errno)))")
        }
    }
}
