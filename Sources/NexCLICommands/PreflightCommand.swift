import ArgumentParser
import Foundation
import NexNode
import NexProcess
import NexSandbox

/// `nex node preflight`: checks (and unless `--check`, installs) what the configured mode needs.
struct PreflightCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check, and install unless --check, what this node's configuration needs.")

    @Option(help: "Node configuration file (JSON).")
    var config: String?

    @Option(
        name: .customLong("init"),
        help: "Write a starter configuration for `sandbox` or `nosandbox` (to --config, default ./node.json).")
    var initialize: String?

    @Flag(help: "Only check; install nothing.")
    var check = false

    @Flag(help: "Install without asking.")
    var yes = false

    /// One requirement and how it stands.
    struct Item {
        var name: String
        var ok: Bool
        var detail: String
        /// Debian packages that provide it, when it can be installed.
        var packages: [String] = []
    }

    func execute() async throws {
        if let mode = initialize {
            try writeStarter(mode)
            return
        }
        let configuration = try config.map { try NodeConfiguration.load(path: $0) } ?? NodeConfiguration()
        var items = await Self.items(for: configuration)
        let missing = items.filter { !$0.ok && !$0.packages.isEmpty }
        if !check, !missing.isEmpty {
            let packages = Array(Set(missing.flatMap(\.packages))).sorted()
            if yes || Self.confirm("Install \(packages.joined(separator: " ")) with apt-get?") {
                try await Self.aptInstall(packages)
                items = await Self.items(for: configuration)
            }
        }
        for item in items {
            Output.say("\(item.ok ? "✅" : "❌") \(item.name): \(item.detail)")
        }
        let failed = items.filter { !$0.ok }
        guard failed.isEmpty else {
            throw CLIError("\(failed.count) requirement(s) missing\(check ? "; run without --check to install" : "")")
        }
        Output.say("This machine is ready for a \(configuration.noSandbox ? "no-sandbox (unsafe)" : "sandboxed") node.")
    }

    /// The requirements of a configuration.
    static func items(for config: NodeConfiguration) async -> [Item] {
        var items: [Item] = []
        let server = NATSServerProcess.findBinary(nexHome: NexHome.path)
        items.append(
            Item(
                name: "nats-server (the embedded server `nex node up` starts when none is reachable)",
                ok: server != nil, detail: server ?? "not found: set NATS_SERVER_BIN or install nats-server"))
        let agent = config.agentPath ?? (Executable.directory + "/nex-agent")
        let hasAgent = FileManager.default.isExecutableFile(atPath: agent)
        items.append(
            Item(
                name: "nex-agent", ok: hasAgent,
                detail: hasAgent ? agent : "not found at \(agent): install it beside nex or set agent_path"))
        let home = NexHome.path
        // One that cannot be made shows as not writable just below.
        try? FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        items.append(
            Item(
                name: "node home \(home)", ok: FileManager.default.isWritableFile(atPath: home),
                detail: FileManager.default.isWritableFile(atPath: home) ? "writable" : "not writable"))
        // What the agent links (V8 among it): a sandbox binds exactly these files in.
        var agentFiles: Result<[String], any Error> = .failure(CLIError("no nex-agent"))
        if hasAgent {
            do { agentFiles = .success(try await NamespaceDriver.runtimeFiles(of: agent)) } catch {
                agentFiles = .failure(error)
            }
        }
        if config.noSandbox {
            items.append(
                Item(name: "sandbox", ok: true, detail: "no_sandbox is set: workloads run unsandboxed (unsafe)"))
        } else if config.sandbox == .auto || config.sandbox == .namespace {
            let bwrap = NamespaceDriver.findBubblewrap()
            items.append(
                Item(
                    name: "bubblewrap (namespace sandbox)", ok: bwrap != nil,
                    detail: bwrap ?? "not installed: apt-get install bubblewrap", packages: ["bubblewrap"]))
            let name = "cgroups (memory, CPU and pids limits from machine_template)"
            if let cgroups = Cgroups.detect() {
                switch await cgroups.check() {
                case .success:
                    items.append(
                        Item(name: name, ok: true, detail: "cgroup \(cgroups.version.rawValue) under /sys/fs/cgroup"))
                case .failure(let problem):
                    items.append(Item(name: name, ok: false, detail: "\(problem) (run the node as root)"))
                }
            } else {
                items.append(
                    Item(name: name, ok: false, detail: "no memory, cpu and pids controllers under /sys/fs/cgroup"))
            }
            items.append(
                Item(
                    name: "seccomp", ok: true,
                    detail: "built in: a deny list of \(SeccompFilter.denied.count) system calls, loaded by bubblewrap")
            )
            switch agentFiles {
            case .success(let files):
                items.append(
                    Item(
                        name: "agent files for the sandbox root", ok: true,
                        detail: "\(files.count) libraries bound read-only; workloads must be static executables"))
            case .failure(let error):
                items.append(Item(name: "agent files for the sandbox root", ok: false, detail: "\(error)"))
            }
        } else if config.sandbox == .firecracker {
            switch FirecrackerDriver.requirements(kernel: config.kernelFilepath, rootfs: config.rootfsFilepath) {
            case .success(let binary):
                items.append(
                    Item(
                        name: "firecracker sandbox", ok: true,
                        detail: "\(binary); kernel and rootfs present; /dev/kvm opens"))
            case .failure(let problem):
                items.append(Item(name: "firecracker sandbox", ok: false, detail: problem.description))
            }
        } else {
            items += await vmItems(config, agent: agent)
        }
        for type in config.workloadTypes where type.isFunction {
            switch (type, agentFiles) {
            case (.v8, .success(let files)), (.wasm, .success(let files)):
                // WebAssembly runs in V8 too.
                let libnode = files.first { $0.contains("libnode") }
                items.append(
                    Item(
                        name: "\(type) workloads", ok: libnode != nil,
                        detail: libnode.map { "V8 from \($0)" } ?? "nex-agent was built without V8 (libnode)"))
            case (_, .failure(let error)):
                items.append(Item(name: "\(type) workloads", ok: false, detail: "nex-agent cannot start: \(error)"))
            case (.native, .success):
                break  // functions only
            }
        }
        return items
    }

    /// The `vm` driver's needs: QEMU, busybox and mkfs.ext4 (installable), the kernel and root filesystem
    /// (fetched and built), the accelerator, and a test boot that saves the warm pool's snapshot.
    static func vmItems(_ config: NodeConfiguration, agent: String) async -> [Item] {
        let fm = FileManager.default
        let qemu = MicroVM.findQEMU()
        let busybox = fm.isExecutableFile(atPath: "/bin/busybox") && StaticExecutable.problem(at: "/bin/busybox") == nil
        let mkfs = ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].first(where: fm.isExecutableFile(atPath:))
        var items = [
            Item(
                name: "QEMU (vm sandbox)", ok: qemu != nil, detail: qemu ?? "not installed",
                packages: ["qemu-system-x86"]),
            Item(
                name: "static busybox (the VM's /init)", ok: busybox,
                detail: busybox ? "/bin/busybox" : "not installed", packages: ["busybox-static"]),
            Item(
                name: "mkfs.ext4 (root filesystem)", ok: mkfs != nil, detail: mkfs ?? "not installed",
                packages: ["e2fsprogs"]),
        ]
        guard qemu != nil, busybox, mkfs != nil else { return items }
        let resources: VMDriver.Resources
        do {
            resources = try await VMDriver.resources(
                kernelFilepath: config.kernelFilepath, rootfsFilepath: config.rootfsFilepath, agent: agent,
                cache: NexHome.path + "/vm")
        } catch {
            items.append(Item(name: "VM kernel and root filesystem", ok: false, detail: "\(error)"))
            return items
        }
        items.append(
            Item(
                name: "VM kernel and root filesystem", ok: true,
                detail: "\(resources.kernel.kernel) (+ initramfs), \(resources.rootfs)"))
        let accelerator = await MicroVM.accelerator(qemu: resources.qemu, kernel: resources.kernel)
        items.append(
            Item(
                name: "accelerator", ok: true,
                detail: accelerator == "kvm" ? "KVM (a test boot passed)" : "software emulation (TCG): no working KVM"))
        let directory = fm.temporaryDirectory.appendingPathComponent("nex-preflight-\(UUID().uuidString)").path
        defer {
            // A test VM's snapshot is as large as its memory: say where it was left.
            if fm.fileExists(atPath: directory) {
                do { try fm.removeItem(atPath: directory) } catch {
                    Output.say("Cannot remove the test boot's files at \(directory): \(error.localizedDescription)")
                }
            }
        }
        let driver = VMDriver(
            qemu: resources.qemu, kernel: resources.kernel, rootfs: resources.rootfs, accelerator: accelerator,
            directory: directory)
        let started = ContinuousClock.now
        func seconds(_ d: Duration) -> String {
            String(format: "%.1f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
        }
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = try await driver.bootTemplate(
                in: directory, memoryMiB: config.machineTemplate.memsizeMib, cpus: config.machineTemplate.vcpuCount)
            items.append(
                Item(
                    name: "test boot", ok: true,
                    detail: "the agent started in a VM, which was saved for the warm pool, in "
                        + seconds(ContinuousClock.now - started)))
        } catch {
            items.append(Item(name: "test boot", ok: false, detail: "\(error)"))
        }
        return items
    }

    func writeStarter(_ mode: String) throws {
        guard mode == "sandbox" || mode == "nosandbox" else { throw CLIError("--init takes sandbox or nosandbox") }
        let path = config ?? "node.json"
        guard !FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path) exists; not overwriting") }
        let body = """
            {
              "machine_pool_size": 1,
              "machine_template": { "vcpu_count": 1, "memsize_mib": 256 },
              "no_sandbox": \(mode == "nosandbox"),
              "workload_types": ["native", "v8", "wasm"],
              "tags": {}
            }

            """
        try body.write(toFile: path, atomically: true, encoding: .utf8)
        Output.say("Wrote \(path) for a \(mode == "sandbox" ? "sandboxed" : "no-sandbox (unsafe)") node")
    }

    static func which(_ tool: String) -> String? {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        return paths.map { $0 + "/" + tool }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func confirm(_ question: String) -> Bool {
        guard isatty(0) != 0 else { return false }
        print("\(question) [y/N] ", terminator: "")
        fflush(nil)
        return readLine()?.lowercased().hasPrefix("y") == true
    }

    static func aptInstall(_ packages: [String]) async throws {
        let apt = "/usr/bin/apt-get"
        guard FileManager.default.isExecutableFile(atPath: apt) else {
            throw CLIError("apt-get not found; install \(packages.joined(separator: " ")) by hand")
        }
        var env = ProcessInfo.processInfo.environment
        env["DEBIAN_FRONTEND"] = "noninteractive"
        let child = try await ChildProcess.spawn(
            executable: apt, arguments: ["install", "-y", "-qq", "--no-install-recommends"] + packages,
            environment: env, newProcessGroup: false)
        let termination = await child.wait()
        guard termination == .exited(0) else {
            throw CLIError("apt-get install \(packages.joined(separator: " ")) failed (\(termination))")
        }
    }
}
