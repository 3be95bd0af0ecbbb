import Foundation
import NexProcess

/// What the `vm` sandbox boots, and how: Debian's cloud kernel with a small first-stage initramfs, and
/// QEMU's `microvm` machine (under KVM where a test boot proves it works, software emulation otherwise).
///
/// The cloud kernel has virtio as modules, so the initramfs (busybox plus the virtio `.ko` files, loaded in
/// dependency order) loads them, mounts the ext4 root read-only from `/dev/vda` and switches to its `/init`
/// (the image `nex rootfs` builds).
public enum MicroVM {
    /// A kernel and its first-stage initramfs.
    public struct Kernel: Sendable {
        public var kernel: String
        public var initramfs: String
    }

    /// The modules the initramfs loads, in dependency order (each one's `depends=` before it).
    static let modules = [
        "drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko", "drivers/virtio/virtio_mmio.ko",
        "drivers/block/virtio_blk.ko", "net/core/failover.ko", "drivers/net/net_failover.ko",
        "drivers/net/virtio_net.ko",
    ]

    static let firstStage = """
        #!/bin/busybox sh
        # First stage: load virtio, mount the real root read-only, hand over to its /init.
        bb=/bin/busybox
        $bb mkdir -p /proc /sys /dev /newroot
        $bb mount -t proc proc /proc
        $bb mount -t sysfs sysfs /sys
        $bb mount -t devtmpfs devtmpfs /dev
        for m in \(modules.map { ($0 as NSString).lastPathComponent }.joined(separator: " ")); do
          $bb insmod /lib/modules/$m
        done
        for i in $($bb seq 1 250); do [ -b /dev/vda ] && break; $bb usleep 20000; done
        $bb mount -o ro -t ext4 /dev/vda /newroot || { echo "nex: no root file system"; $bb poweroff -f; }
        $bb umount /proc /sys /dev
        exec $bb switch_root /newroot /init

        """

    /// Downloads Debian's cloud kernel (`apt-get download`, no installation, nothing under /boot) into
    /// `directory` and builds the initramfs, unless both are there already.
    public static func prepareKernel(in directory: String, busybox: String = "/bin/busybox") async throws -> Kernel {
        let fm = FileManager.default
        let kernel = directory + "/vmlinuz"
        let initramfs = directory + "/initramfs.gz"
        if fm.fileExists(atPath: kernel), fm.fileExists(atPath: initramfs) {
            return Kernel(kernel: kernel, initramfs: initramfs)
        }
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let work = directory + "/work-\(UUID().uuidString)"
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: work) }  // leaves at most a work folder beside the kernel
        // The metapackage names the versioned image; download that one.
        let depends = try await shell(
            "apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'", in: work)
        let package = depends.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !package.isEmpty else { throw SandboxError("apt knows no linux-image-cloud-amd64 (apt-get update?)") }
        _ = try await shell("apt-get download \(package) >/dev/null && dpkg-deb -x \(package)_*.deb root", in: work)
        let boot = try fm.contentsOfDirectory(atPath: work + "/root/boot")
        guard let image = boot.first(where: { $0.hasPrefix("vmlinuz-") }) else {
            throw SandboxError("\(package) holds no vmlinuz")
        }
        let release = String(image.dropFirst("vmlinuz-".count))
        let stage = work + "/initramfs"
        for folder in ["bin", "lib/modules"] {
            try fm.createDirectory(atPath: stage + "/" + folder, withIntermediateDirectories: true)
        }
        try fm.copyItem(atPath: busybox, toPath: stage + "/bin/busybox")
        for module in modules {
            let source = work + "/root/lib/modules/\(release)/kernel/" + module
            try fm.copyItem(atPath: source, toPath: stage + "/lib/modules/" + (module as NSString).lastPathComponent)
        }
        try firstStage.write(toFile: stage + "/init", atomically: true, encoding: .utf8)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: stage + "/init")
        // Built in the private work directory and renamed into place (atomic: nodes or tests may prepare the
        // same directory at once; the kernel goes last, as its presence says both are there).
        _ = try await shell(
            "cd \(stage) && find . | \(busybox) cpio -o -H newc 2>/dev/null | gzip -1 > \(work)/initramfs.gz", in: work)
        guard rename(work + "/initramfs.gz", initramfs) == 0, rename(work + "/root/boot/" + image, kernel) == 0 else {
            throw SandboxError("cannot write into \(directory): \(String(cString: strerror(errno)))")
        }
        return Kernel(kernel: kernel, initramfs: initramfs)
    }

    /// The QEMU command line of one microVM: `memoryMiB`, one vCPU per `cpus`, the root image read-only,
    /// the kernel command line `append`; no network device unless `netdev` is given.
    public static func arguments(
        kernel: Kernel, rootfs: String, memoryMiB: Int, cpus: Int, append: String, netdev: String? = nil
    ) -> [String] {
        // A guest's TSC calibration under load can hang the boot: give it the host's frequency.
        let khz = hostTSCkHz().map { " tsc_early_khz=\($0) tsc=reliable" } ?? ""
        var args = [
            "-M", "microvm", "-m", String(memoryMiB), "-smp", String(max(cpus, 1)), "-nographic", "-no-reboot",
            "-nodefaults", "-serial", "stdio",
            "-kernel", kernel.kernel, "-initrd", kernel.initramfs,
            "-append", "console=ttyS0 quiet panic=-1 pci=off" + khz + " " + append,
            "-drive", "id=root,file=\(rootfs),format=raw,if=none,readonly=on",
            "-device", "virtio-blk-device,drive=root",
        ]
        if let netdev { args += ["-netdev", netdev, "-device", "virtio-net-device,netdev=n0"] }
        return args
    }

    static func hostTSCkHz() -> Int? {
        // No /proc/cpuinfo: the guest calibrates its clock itself.
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in info.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            if let mhz = Double(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") {
                return Int(mhz * 1000)
            }
        }
        return nil
    }

    /// `kvm` when a short test boot under KVM reaches the kernel's init, else `tcg` (software emulation).
    /// Where /dev/kvm exists but cannot run a stock kernel (these machines' KVM is itself emulated) the probe
    /// costs its `timeout` once: the answer is kept beside the kernel.
    public static func accelerator(qemu: String, kernel: Kernel, timeout: Duration = .seconds(15)) async -> String {
        let record = (kernel.kernel as NSString).deletingLastPathComponent + "/accelerator"
        // None kept, or unreadable: probed again.
        if let saved = try? String(contentsOfFile: record, encoding: .utf8), ["kvm", "tcg"].contains(saved) {
            return saved
        }
        let kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard kvm >= 0 else { return "tcg" }
        close(kvm)
        let arguments = [
            "-M", "microvm", "-accel", "kvm", "-m", "128", "-nographic", "-no-reboot", "-nodefaults",
            "-serial", "stdio", "-kernel", kernel.kernel, "-initrd", kernel.initramfs,
            "-append", "console=ttyS0 panic=-1",
        ]
        // A QEMU that cannot start cannot probe KVM: software emulation always works.
        guard
            let child = try? await ChildProcess.spawn(
                executable: qemu, arguments: arguments, environment: ["PATH": "/usr/bin:/bin"], stdout: .pipe,
                stderr: .null)
        else { return "tcg" }
        let reached = AsyncStream<Bool>.makeStream()
        if let out = child.stdout {
            LineReader.start(fd: out) { line in
                if line.contains("Run /init as init process") { reached.continuation.yield(true) }
            } onEnd: {
                reached.continuation.yield(false)
            }
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            reached.continuation.yield(false)
        }
        var works = false
        for await answer in reached.stream {
            works = answer
            break
        }
        timer.cancel()
        await child.terminate(grace: .milliseconds(100))
        let answer = works ? "kvm" : "tcg"
        try? answer.write(toFile: record, atomically: true, encoding: .utf8)  // not kept: the next start probes again
        return answer
    }

    /// Where QEMU is, if installed.
    public static func findQEMU() -> String? {
        ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    private static func shell(_ command: String, in directory: String) async throws -> String {
        let child = try await ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", command], environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
            directory: directory, stdout: .pipe, stderr: .pipe)
        async let out = readAll(child.stdout)
        async let err = readAll(child.stderr)
        let (termination, timedOut) = await child.wait(killingAfter: .seconds(300))
        let (output, errors) = (String(decoding: await out, as: UTF8.self), String(decoding: await err, as: UTF8.self))
        guard termination == .exited(0), !timedOut else {
            throw SandboxError("`\(command)` \(termination): \(errors.suffix(500))")
        }
        return output
    }
}
