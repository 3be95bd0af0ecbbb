import Foundation
import NexModels
import NexProcess

/// The `vm` driver: a QEMU `microvm` per agent, booting Debian's cloud kernel (`MicroVM`) and the image
/// `nex rootfs` builds, with no network but the node's channels (`VMChannels`).
///
/// Cold boots take seconds under software emulation, so agents never boot: the driver boots one template
/// VM, lets the agent in it start and wait for its settings, saves the VM (QEMU migration to a file), and
/// starts every agent's VM from that snapshot. The restored agent finds its settings (id, credentials)
/// waiting on the control channel; its connection to it is part of the saved network state.
///
/// A container image is the exception: its agent boots cold (a snapshot cannot take another disk), with an ext4
/// copy of the image's root (``ImageDisks``) as a second, read-only disk that `/init` makes the agent's root.
public struct VMDriver: SandboxDriver {
    public var name: String { "vm" }
    public var isSandboxed: Bool { true }
    public var runsImages: Bool { true }

    let qemu: String
    let kernel: MicroVM.Kernel
    let rootfs: String
    let accelerator: String
    let template: VMTemplate
    let imageDisks = ImageDisks()
    let agentOutput: @Sendable (String, String) -> Void

    /// A driver keeping its template snapshot in `directory` (removed and remade when the node starts).
    public init(
        qemu: String, kernel: MicroVM.Kernel, rootfs: String, accelerator: String, directory: String,
        agentOutput: @escaping @Sendable (_ agentID: String, _ line: String) -> Void = { _, _ in }
    ) {
        self.qemu = qemu
        self.kernel = kernel
        self.rootfs = rootfs
        self.accelerator = accelerator
        self.template = VMTemplate(directory: directory)
        self.agentOutput = agentOutput
    }

    /// What the driver boots, found or made.
    public struct Resources: Sendable {
        public var qemu: String
        public var kernel: MicroVM.Kernel
        public var rootfs: String
    }

    /// QEMU; the kernel (`kernel_filepath` with the first-stage `initramfs.gz` beside it, else Debian's cloud
    /// kernel fetched into `cache/kernel`); the root filesystem (`rootfs_filepath`, else an image with
    /// `agent` built at `cache/rootfs.ext4`, remade when the agent is newer than it).
    public static func resources(kernelFilepath: String?, rootfsFilepath: String?, agent: String, cache: String)
        async throws -> Resources
    {
        let fm = FileManager.default
        guard let qemu = MicroVM.findQEMU() else {
            throw SandboxError("QEMU is not installed: apt-get install qemu-system-x86 (`nex node preflight`)")
        }
        let kernel: MicroVM.Kernel
        if let kernelFilepath {
            let initramfs = (kernelFilepath as NSString).deletingLastPathComponent + "/initramfs.gz"
            guard fm.isReadableFile(atPath: kernelFilepath), fm.isReadableFile(atPath: initramfs) else {
                throw SandboxError(
                    "the vm sandbox needs kernel_filepath and initramfs.gz beside it (`nex node preflight` makes both)")
            }
            kernel = MicroVM.Kernel(kernel: kernelFilepath, initramfs: initramfs)
        } else {
            kernel = try await MicroVM.prepareKernel(in: cache + "/kernel")
        }
        if let rootfsFilepath {
            guard fm.isReadableFile(atPath: rootfsFilepath) else {
                throw SandboxError("rootfs_filepath \(rootfsFilepath) cannot be read (build one with `nex rootfs`)")
            }
            return Resources(qemu: qemu, kernel: kernel, rootfs: rootfsFilepath)
        }
        let image = cache + "/rootfs.ext4"
        // No such file: nil, so the image is built.
        func modified(_ path: String) -> Date? { (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date }
        if let built = modified(image), let agentDate = modified(agent), built >= agentDate {
            return Resources(qemu: qemu, kernel: kernel, rootfs: image)
        }
        try fm.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let staged = image + ".\(UUID().uuidString).tmp"
        _ = try await RootfsBuilder(agent: agent).build(to: staged)
        guard rename(staged, image) == 0 else {
            throw SandboxError("cannot write \(image): \(String(cString: strerror(errno)))")
        }
        return Resources(qemu: qemu, kernel: kernel, rootfs: image)
    }

    static func isPlainPathByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"),
            UInt8(ascii: "/"):
            true
        default: false
        }
    }

    /// A container image to boot with: its disk and how `/init` sets its root up.
    struct BootImage {
        var disk: String
        var root: ImageRoot
    }

    /// The QEMU command line of a VM whose channels are `channels`, restored from `snapshot` if given.
    func arguments(
        memoryMiB: Int, cpus: Int, channels: VMChannels, snapshot: String?, image: BootImage? = nil
    ) -> [String] {
        let control = "\(VMChannel.host):\(VMChannel.controlPort)"
        var append = "nex.env.\(AgentEnvironment.vmControl)=\(control) nex.env.\(AgentEnvironment.runAs)=1000"
        if let root = image?.root {
            append += " nex.image.user=\(root.uid):\(root.gid)"
            if !root.writableDirectories.isEmpty {
                append += " nex.image.tmpfs=" + root.writableDirectories.joined(separator: ",")
            }
            if !root.maskedFiles.isEmpty { append += " nex.image.mask=" + root.maskedFiles.joined(separator: ",") }
        }
        var arguments =
            MicroVM.arguments(
                kernel: kernel, rootfs: rootfs, memoryMiB: memoryMiB, cpus: cpus, append: append,
                netdev: channels.netdev)
            + ["-accel", accelerator] + channels.chardevArguments
            + ["-qmp", "unix:\(channels.directory)/qmp.sock,server=on,wait=off"]
        if let disk = image?.disk {
            arguments += [
                "-drive", "id=image,file=\(disk),format=raw,if=none,readonly=on",
                "-device", "virtio-blk-device,drive=image",
            ]
        }
        if let snapshot { arguments += ["-incoming", "exec:cat '\(snapshot)'"] }
        return arguments
    }

    /// The disk and settings of an image's VM. `/init` reads the image's paths from the kernel command line,
    /// so only plain ones are taken (letters, digits, `.`, `_`, `-`, `/`; 200 bytes in all).
    func bootImage(_ root: ImageRoot) async throws -> BootImage {
        let paths = root.writableDirectories + root.maskedFiles
        for path in paths where !path.utf8.allSatisfy(Self.isPlainPathByte) {
            throw SandboxError(
                "the vm sandbox cannot mount \(path) in an image: only letters, digits, '.', '_', '-' and '/' "
                    + "survive the kernel command line; set a plainer WorkingDir, or use the namespace sandbox")
        }
        guard paths.joined().utf8.count <= 200 else {
            throw SandboxError("the vm sandbox cannot mount that many paths in an image: use the namespace sandbox")
        }
        return BootImage(disk: try await imageDisks.disk(for: root), root: root)
    }

    public func launch(_ spec: AgentLaunchSpec) async throws -> any AgentSandbox {
        var image: BootImage?
        var snapshot: String?
        if let root = spec.imageRoot {
            image = try await bootImage(root)
        } else {
            snapshot = try await template.snapshot(memoryMiB: spec.memoryMiB, cpus: spec.vcpuCount) { directory in
                try await bootTemplate(in: directory, memoryMiB: spec.memoryMiB, cpus: spec.vcpuCount)
            }
        }
        let settings = [
            AgentEnvironment.agentID: spec.agentID,
            AgentEnvironment.linkTCP: "\(VMChannel.host):\(VMChannel.linkPort)",
        ]
        let channels = try await VMChannels(
            agent: .init(
                settings: settings, linkEnd: dup(spec.linkDescriptor), artifact: spec.workDirectory + "/workload"))
        let process: ChildProcess
        do {
            process = try await ChildProcess.spawn(
                executable: qemu,
                arguments: arguments(
                    memoryMiB: spec.memoryMiB, cpus: spec.vcpuCount, channels: channels, snapshot: snapshot,
                    image: image),
                environment: ["PATH": "/usr/bin:/bin"], directory: spec.workDirectory, stdout: .pipe, stderr: .pipe)
        } catch {
            channels.close()
            throw error
        }
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            let output = agentOutput
            let id = spec.agentID
            LineReader.start(fd: fd) { output(id, $0) }
        }
        let sandbox = VMSandbox(agentID: spec.agentID, process: process, channels: channels)
        // A cold boot loads no snapshot: its agent may have its settings whenever it asks.
        if snapshot != nil {
            do {
                try await waitUntilRunning(qmp: channels.directory + "/qmp.sock")
            } catch {
                await sandbox.destroy(grace: .seconds(1))
                throw error
            }
        }
        channels.releaseSettings()
        return sandbox
    }

    /// Waits until the restored VM runs (the snapshot is loaded).
    func waitUntilRunning(qmp path: String) async throws {
        let qmp = try await QMPConnection.connect(path: path, timeout: .seconds(10))
        defer { qmp.close() }
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            if try await qmp.execute("query-status", returning: QMPConnection.Status.self).status == "running" {
                return
            }
            guard ContinuousClock.now < deadline else { throw SandboxError("the VM did not resume from its snapshot") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Boots a VM whose agent waits for settings, and saves it to `directory/snapshot`.
    public func bootTemplate(in directory: String, memoryMiB: Int, cpus: Int) async throws -> String {
        let channels = try await VMChannels(agent: nil)
        defer { channels.close() }
        let ready = AsyncStream<Void>.makeStream()
        let process = try await ChildProcess.spawn(
            executable: qemu,
            arguments: arguments(memoryMiB: memoryMiB, cpus: cpus, channels: channels, snapshot: nil),
            environment: ["PATH": "/usr/bin:/bin"], directory: directory, stdout: .pipe, stderr: .pipe)
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            let output = agentOutput
            LineReader.start(fd: fd) { line in
                if line.contains(VMChannel.waitingLine) { ready.continuation.yield() }
                output("vm-template", line)
            }
        }
        let exited = Task {
            _ = await process.wait()
            ready.continuation.finish()
        }
        defer { exited.cancel() }
        let booted = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in ready.stream { return true }
                return false
            }
            group.addTask {
                try await Task.sleep(for: .seconds(180))
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
        guard booted else {
            await process.terminate(grace: .seconds(1))
            throw SandboxError("the template VM did not start its agent (see the vm-template output)")
        }
        let snapshot = directory + "/snapshot"
        do {
            let qmp = try await QMPConnection.connect(path: channels.directory + "/qmp.sock", timeout: .seconds(10))
            defer { qmp.close() }
            try await qmp.execute("migrate", ["uri": "exec:cat > '\(snapshot).tmp'"])
            let deadline = ContinuousClock.now + .seconds(120)
            while true {
                let state =
                    try await qmp.execute("query-migrate", returning: QMPConnection.Status.self).status ?? "unknown"
                if state == "completed" { break }
                guard state != "failed", ContinuousClock.now < deadline else {
                    throw SandboxError("saving the template VM: \(state)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            try await qmp.execute("quit")
        } catch {
            await process.terminate(grace: .seconds(1))
            throw error
        }
        _ = await process.wait(killingAfter: .seconds(10))
        guard rename(snapshot + ".tmp", snapshot) == 0 else {
            throw SandboxError("saving the template VM: \(String(cString: strerror(errno)))")
        }
        return snapshot
    }
}

/// The template snapshot, made once per machine shape and shared by every launch.
actor VMTemplate {
    let directory: String
    private var snapshots: [String: Task<String, any Error>] = [:]

    init(directory: String) { self.directory = directory }

    func snapshot(
        memoryMiB: Int, cpus: Int, make: @escaping @Sendable (String) async throws -> String
    ) async throws -> String {
        let key = "\(memoryMiB)m-\(cpus)c"
        while true {
            if let task = snapshots[key] {
                do { return try await task.value } catch {
                    // A failed boot is not kept: the next launch tries again.
                    guard snapshots[key] == task else { continue }
                    snapshots[key] = nil
                    throw error
                }
            }
            let folder = directory + "/template-" + key
            snapshots[key] = Task {
                // Usually none: a template an earlier node left there is overwritten by the new boot.
                try? FileManager.default.removeItem(atPath: folder)
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                return try await make(folder)
            }
        }
    }
}

struct VMSandbox: AgentSandbox {
    let agentID: String
    /// The agent fetches its artifact over the control channel into the VM's /tmp.
    var workDirectoryInside: String { "/tmp/nex" }
    let process: ChildProcess
    let channels: VMChannels

    func wait() async -> ChildProcess.Termination {
        let termination = await process.wait()
        channels.close()
        return termination
    }

    func destroy(grace: Duration) async {
        // The workload lives inside the VM: ending QEMU ends everything in it.
        await process.terminate(grace: grace)
        channels.close()
    }

    func allowConnections(to endpoints: [NetworkEndpoint]) async throws -> [NetworkEndpoint] {
        try await channels.forward(endpoints)
    }
}

/// The ext4 copies of image roots a VM boots with (`rootfs.UID.GID.ext4` beside each `rootfs`, so it goes when
/// the image cache evicts the image), each made once however many agents ask at the same time: the first caller
/// makes it, the others wait for it.
actor ImageDisks {
    private var making: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func disk(for root: ImageRoot) async throws -> String {
        let disk = root.rootfs + ".\(root.uid).\(root.gid).ext4"
        while making.contains(disk) {
            await withCheckedContinuation { waiting[disk, default: []].append($0) }
        }
        making.insert(disk)
        defer {
            making.remove(disk)
            for waiter in waiting.removeValue(forKey: disk) ?? [] { waiter.resume() }
        }
        if await BlockingIO.run({ FileManager.default.fileExists(atPath: disk) }) { return disk }
        try await Self.make(disk, from: root)
        return disk
    }

    /// The image is written under a private name and renamed: a crash leaves no half-made disk under the name
    /// the next launch trusts.
    private static func make(_ disk: String, from root: ImageRoot) async throws {
        let (entries, bytes) = try await BlockingIO.run { try Ext4Image.measure(root.rootfs) }
        // Metadata besides the files' blocks: an inode table entry per file, bitmaps and group descriptors.
        let sizeMiB = (bytes + entries * 512) / (1 << 20) * 11 / 10 + 16
        let staged = disk + ".\(UUID().uuidString).tmp"
        do {
            try await Ext4Image.make(
                from: root.rootfs, to: staged, label: "nex-image", sizeMiB: sizeMiB, inodes: entries + 64,
                readOnly: true, owner: (root.uid, root.gid))
        } catch {
            unlink(staged)
            throw error
        }
        guard rename(staged, disk) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(staged)
            throw SandboxError("cannot write \(disk): \(reason)")
        }
    }
}
