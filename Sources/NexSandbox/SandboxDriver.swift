public import NexProcess

/// How the node starts agents: one protocol, several drivers (`none` runs agents as plain child processes;
/// isolated drivers add namespaces, cgroups or a VM). The node knows only this protocol: the warm pool asks
/// a driver for an agent, hands it a workload over the agent's link, and destroys it afterwards.
public protocol SandboxDriver: Sendable {
    /// The driver's name as tags and logs show it (`none`, `namespace`, `vm`, `firecracker`).
    var name: String { get }
    /// Whether agents started by this driver are isolated from the host (false only for `none`).
    var isSandboxed: Bool { get }
    /// Whether it can start an agent in a container image's root (``AgentLaunchSpec/imageRoot``).
    var runsImages: Bool { get }
    /// Starts one agent that will say hello on its link.
    func launch(_ spec: AgentLaunchSpec) async throws -> any AgentSandbox
}

extension SandboxDriver {
    public var runsImages: Bool { false }
}

/// Everything a driver needs to start one agent.
public struct AgentLaunchSpec: Sendable {
    /// The agent's id (it repeats it in its hello).
    public var agentID: String
    /// The `nex-agent` executable on the host.
    public var agentExecutable: String
    /// A host directory private to this agent; the node puts the workload's artifact here.
    public var workDirectory: String
    /// Memory and CPU the agent and its workload may use (`machine_template`).
    public var memoryMiB: Int
    public var vcpuCount: Int
    /// The agent's end of its link to the node (a Unix stream socket, the agent's only road to the node): the
    /// driver gives it to the agent as descriptor ``AgentEnvironment/linkDescriptor`` (or relays it into a VM);
    /// the node closes its copy afterwards.
    public var linkDescriptor: Int32
    /// A container image's root file system to run the agent (and so its workload) in, instead of an empty
    /// root; nil for every other agent.
    public var imageRoot: ImageRoot?

    public init(
        agentID: String, agentExecutable: String, workDirectory: String, memoryMiB: Int, vcpuCount: Int,
        linkDescriptor: Int32
    ) {
        self.agentID = agentID
        self.agentExecutable = agentExecutable
        self.workDirectory = workDirectory
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.linkDescriptor = linkDescriptor
    }
}

/// An image's unpacked root file system as a sandbox's `/`: read-only, with a private tmpfs at `/tmp` and at
/// each of `writableDirectories`. It must hold the directories the sandbox mounts over (see
/// ``mountPoints``): a node's image cache adds them when it unpacks.
public struct ImageRoot: Sendable, Hashable {
    /// The root file system on the host.
    public var rootfs: String
    /// The user and group the agent and its workload run as, inside.
    public var uid: UInt32
    public var gid: UInt32
    /// Absolute paths inside the image given a private, empty tmpfs.
    public var writableDirectories: [String]
    /// Files of the image hidden behind an empty one (`/etc/ld.so.preload`: the agent runs in the image's root,
    /// and no file of the image may load code into it).
    public var maskedFiles: [String]

    /// The directories a sandbox mounts over in an image's root.
    public static let mountPoints = ["nex", "workload", "proc", "dev", "tmp"]

    public init(
        rootfs: String, uid: UInt32, gid: UInt32, writableDirectories: [String] = [], maskedFiles: [String] = []
    ) {
        self.rootfs = rootfs
        self.uid = uid
        self.gid = gid
        self.writableDirectories = writableDirectories
        self.maskedFiles = maskedFiles
    }
}

/// One running agent in its sandbox.
public protocol AgentSandbox: Sendable {
    var agentID: String { get }
    /// Where the spec's `workDirectory` appears to the agent.
    var workDirectoryInside: String { get }
    /// Waits until the agent (and so its sandbox) has ended.
    func wait() async -> ChildProcess.Termination
    /// Ends the agent: SIGTERM (the agent stops its workload), then SIGKILL after `grace`; frees the sandbox.
    func destroy(grace: Duration) async
    /// Makes servers the workload was given reachable from inside, and returns the address of each as the
    /// workload must dial it (the same ones when the sandbox shares the host's network).
    func allowConnections(to endpoints: [NetworkEndpoint]) async throws -> [NetworkEndpoint]
    /// What the sandbox uses now, where its driver can tell (a cgroup); nil otherwise.
    func usage() -> SandboxUsage?
}

extension AgentSandbox {
    public func usage() -> SandboxUsage? { nil }
}

/// Memory and CPU time a sandbox uses, from its cgroup.
public struct SandboxUsage: Sendable, Equatable {
    public var memoryBytes: Int
    /// CPU time of everything in the sandbox since it started.
    public var cpuSeconds: Double
    public init(memoryBytes: Int, cpuSeconds: Double) {
        self.memoryBytes = memoryBytes
        self.cpuSeconds = cpuSeconds
    }
}

/// A server a workload may reach (`host` a name or an address).
public struct NetworkEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
