import CNexSpawn
import Foundation
import NexModels
import NexProcess
import Synchronization

/// The `namespace` driver: each agent and its workload in their own user, pid, mount, ipc, uts, cgroup and
/// network namespaces (bubblewrap), on an empty read-only root that holds only the agent, the files it
/// needs and the work directory, with a private /tmp, no capabilities, a seccomp filter and cgroup limits
/// from `machine_template`.
///
/// The only way out is the socket the node hands in: the agent's link. The sandbox has no network.
public struct NamespaceDriver: SandboxDriver {
    public var name: String { "namespace" }
    public var isSandboxed: Bool { true }
    public var runsImages: Bool { true }

    /// Where bubblewrap reads the seccomp program (after the link, descriptor 3).
    static let seccompDescriptor: Int32 = 4
    /// Where bubblewrap writes the sandbox's first pid (`--info-fd`).
    static let infoDescriptor: Int32 = 5
    /// The agent inside the sandbox.
    static let agentInside = "/nex/nex-agent"
    /// The agent's shared libraries inside the sandbox (the loader excepted).
    static let libraryDirectory = "/nex/lib"
    /// The work directory inside the sandbox.
    static let workInside = "/workload"
    /// Processes a sandbox may have at once (a fork bomb stops here).
    public static let defaultPidsLimit = 256

    let bubblewrap: String
    let runtimeFiles: [String]
    let cgroups: Cgroups?
    let pidsLimit: Int
    let agentOutput: @Sendable (String, String) -> Void

    /// A driver that runs `bubblewrap`; `runtimeFiles` are host files the agent needs (its shared libraries
    /// and their loader), bound read-only (the loader at its path, the rest in /nex/lib); without `cgroups` there
    /// are no resource limits.
    public init(
        bubblewrap: String, runtimeFiles: [String], cgroups: Cgroups?, pidsLimit: Int = Self.defaultPidsLimit,
        agentOutput: @escaping @Sendable (_ agentID: String, _ line: String) -> Void = { _, _ in }
    ) {
        self.bubblewrap = bubblewrap
        self.runtimeFiles = runtimeFiles
        self.cgroups = cgroups
        self.pidsLimit = pidsLimit
        self.agentOutput = agentOutput
    }

    /// Where bubblewrap is installed, if it is.
    public static func findBubblewrap() -> String? {
        ["/usr/bin/bwrap", "/usr/local/bin/bwrap"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The shared libraries (and the loader) `executable` needs, as `ldd` resolves them on this host.
    public static func runtimeFiles(of executable: String) async throws -> [String] {
        let ldd = try await ChildProcess.spawn(
            executable: "/usr/bin/ldd", arguments: [executable], environment: ["PATH": "/usr/bin:/bin"],
            stdout: .pipe, stderr: .null)
        let output = String(decoding: await readAll(ldd.stdout), as: UTF8.self)
        let termination = await ldd.wait()
        // A static executable: ldd says so and exits 1; it needs nothing.
        if output.contains("not a dynamic executable") || output.contains("statically linked") { return [] }
        guard termination == .exited(0) else { throw SandboxError("ldd \(executable) \(termination)") }
        var files: [String] = []
        for line in output.split(separator: "\n") {
            if line.contains("not found") { throw SandboxError("\(executable) needs a missing library: \(line)") }
            // "libx.so => /path/libx.so (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let target = line.split(separator: "=>").last.map(String.init) ?? String(line)
            if let path = target.split(whereSeparator: \.isWhitespace).first(where: { $0.hasPrefix("/") }) {
                files.append(String(path))
            }
        }
        return files
    }

    public func launch(_ spec: AgentLaunchSpec) async throws -> any AgentSandbox {
        let seccomp = try MemoryFile(name: "nex-seccomp", contents: SeccompFilter.bytes)
        var procs: [String] = []
        if let cgroups {
            procs = try cgroups.create(
                spec.agentID,
                limits: Cgroups.Limits(
                    memoryBytes: spec.memoryMiB << 20, cpus: max(spec.vcpuCount, 1), pids: pidsLimit))
        }
        var info: [Int32] = [0, 0]
        guard nex_pipe_cloexec(&info) == 0 else {
            let reason = String(cString: strerror(errno))
            if let cgroups { await cgroups.remove(spec.agentID) }
            throw SandboxError("pipe: \(reason)")
        }
        defer { close(info[1]) }
        let process: ChildProcess
        do {
            process = try await ChildProcess.spawn(
                executable: bubblewrap, arguments: arguments(spec),
                environment: [
                    AgentEnvironment.agentID: spec.agentID,
                    AgentEnvironment.linkFD: String(AgentEnvironment.linkDescriptor),
                    "PATH": "/nex", "HOME": "/tmp",
                ].merging(spec.imageRoot == nil ? ["LD_LIBRARY_PATH": Self.libraryDirectory] : [:]) { a, _ in a },
                stdout: .pipe, stderr: .pipe,
                extraDescriptors: [spec.linkDescriptor, seccomp.fd, info[1]], cgroupProcs: procs)
        } catch {
            close(info[0])
            if let cgroups { await cgroups.remove(spec.agentID) }
            throw error
        }
        let infoReader = info[0]
        let childPID = Task { await Self.childPID(from: infoReader) }
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            let output = agentOutput
            let id = spec.agentID
            LineReader.start(fd: fd) { output(id, $0) }
        }
        return NamespaceSandbox(
            agentID: spec.agentID, workDirectoryInside: Self.workInside, process: process, cgroups: cgroups,
            childPID: childPID)
    }

    /// The bubblewrap command line for one agent.
    func arguments(_ spec: AgentLaunchSpec) -> [String] {
        let image = spec.imageRoot
        var args = [
            "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", String(image?.uid ?? 1000), "--gid", String(image?.gid ?? 1000), "--hostname", "nex-sandbox",
        ]
        // An image's root, read-only: what follows mounts over the directories its cache made for them.
        if let image { args += ["--ro-bind", image.rootfs, "/", "--tmpfs", "/nex"] }
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        // As in a VM's root file system: the loader at its own path (the agent names it), every other library in
        // /nex/lib, found through LD_LIBRARY_PATH. The sandbox sees no host library directory and no ld.so.cache.
        // In an image the loader's path belongs to the image (its own libc): it goes to /nex/lib too, and runs
        // the agent by name, so nothing of the host reaches the image's programs.
        var loader: String?
        for file in runtimeFiles {
            let name = (file as NSString).lastPathComponent
            let isLoader = name.hasPrefix("ld-linux")
            let inside = isLoader && image == nil ? file : Self.libraryDirectory + "/" + name
            if isLoader { loader = inside }
            args += ["--ro-bind", file, inside]
        }
        args += [
            "--ro-bind", spec.agentExecutable, Self.agentInside,
            "--ro-bind", spec.workDirectory, Self.workInside,
        ]
        for directory in image?.writableDirectories ?? [] { args += ["--tmpfs", directory] }
        for file in image?.maskedFiles ?? [] { args += ["--ro-bind", "/dev/null", file] }
        args += [
            "--remount-ro", "/",
            "--chdir", Self.workInside,
            "--seccomp", String(Self.seccompDescriptor), "--info-fd", String(Self.infoDescriptor),
            "--",
        ]
        if image != nil, let loader {
            // --inhibit-cache: the image's ld.so.cache names the image's libraries, never the agent's.
            args += [loader, "--inhibit-cache", "--library-path", Self.libraryDirectory, Self.agentInside]
        } else {
            args.append(Self.agentInside)
        }
        return args
    }

    /// Reads bubblewrap's info JSON (written once the namespaces exist) until it closes: `child-pid`.
    static func childPID(from fd: Int32) async -> Int32? {
        let bytes = await readAll(fd, limit: 65536)
        // Cut short (bubblewrap failed before the namespaces existed): no child to follow.
        return (try? JSONDecoder().decode(BubblewrapInfo.self, from: Data(bytes)))?.childPID
    }

    /// What bubblewrap writes to its `--info-fd`.
    private struct BubblewrapInfo: Decodable {
        var childPID: Int32

        enum CodingKeys: String, CodingKey { case childPID = "child-pid" }
    }

}

final class NamespaceSandbox: AgentSandbox {
    let agentID: String
    let workDirectoryInside: String
    let process: ChildProcess
    let cgroups: Cgroups?
    /// The sandbox's first process as the host sees it (from bubblewrap's `--info-fd`): its namespaces.
    let childPID: Task<Int32?, Never>
    private let forwarders = Mutex<[Acceptor]>([])

    init(
        agentID: String, workDirectoryInside: String, process: ChildProcess, cgroups: Cgroups?,
        childPID: Task<Int32?, Never>
    ) {
        self.agentID = agentID
        self.workDirectoryInside = workDirectoryInside
        self.process = process
        self.cgroups = cgroups
        self.childPID = childPID
    }

    func wait() async -> ChildProcess.Termination {
        let termination = await process.wait()
        await release()
        return termination
    }

    /// bubblewrap dies on SIGTERM; everything inside gets SIGKILL with it (`--die-with-parent`), and the
    /// cgroup sweep catches anything that escaped the process tree.
    func destroy(grace: Duration) async {
        await process.terminate(grace: grace)
        await release()
    }

    /// The k-th server is at 127.0.0.k inside (its own loopback address, so servers on the same port differ)
    /// on the server's port, forwarded by the node.
    func allowConnections(to endpoints: [NetworkEndpoint]) async throws -> [NetworkEndpoint] {
        guard let pid = await childPID.value else { throw SandboxError("the sandbox did not report its process") }
        var inside: [NetworkEndpoint] = []
        for (index, endpoint) in endpoints.enumerated() {
            let address = "127.0.0.\(index + 1)"
            let forwarder = try await PortForwarder.start(
                pid: pid, address: address, port: endpoint.port, target: (endpoint.host, endpoint.port))
            forwarders.withLock { $0.append(forwarder) }
            inside.append(NetworkEndpoint(host: address, port: endpoint.port))
        }
        return inside
    }

    func usage() -> SandboxUsage? { cgroups?.usage(agentID) }

    private func release() async {
        let open = forwarders.withLock { f in
            defer { f.removeAll() }
            return f
        }
        for forwarder in open { forwarder.close() }
        await cgroups?.remove(agentID)
    }
}

/// Why a sandbox could not be made.
public struct SandboxError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
