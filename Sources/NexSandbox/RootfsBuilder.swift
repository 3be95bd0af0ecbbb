import Foundation
import NexProcess

/// Builds the root filesystem a VM sandbox boots (`nex rootfs`): an ext4 image made with `mkfs.ext4 -d`
/// from a staging directory, without Docker, loop mounts or root.
///
/// Inside: `/init` (a busybox shell script, PID 1) that mounts /proc, /sys, /dev and /tmp, brings up the
/// network device (the only addresses it reaches are the node's channels, see `VMChannel`), takes the agent's
/// settings from the kernel command line (`nex.env.KEY=VALUE`), runs an optional setup script, then starts
/// `/nex/nex-agent` as its child and powers the VM off when the agent ends. The agent links V8 (libnode), so
/// it is not static: its libraries go in `/nex/lib` (found through `LD_LIBRARY_PATH`, which precedes the
/// agent's run paths; those may lie under /tmp, where the VM mounts a fresh tmpfs), the loader at its path and
/// in `/nex/lib`. Given a container image (`nex.image.user=UID:GID` on the command line, the image on a second
/// disk), `/init` runs the agent in the image's root instead (see ``VMDriver``).
public struct RootfsBuilder: Sendable {
    /// The `nex-agent` to put in.
    public var agent: String
    /// A shell script `/init` runs before the agent (copied to `/nex/setup.sh`).
    public var script: String?
    /// The image size; nil: what the files need plus 64 MiB.
    public var sizeMiB: Int?
    /// A static busybox (Debian's busybox-static).
    public var busybox = "/bin/busybox"

    public init(agent: String, script: String? = nil, sizeMiB: Int? = nil) {
        self.agent = agent
        self.script = script
        self.sizeMiB = sizeMiB
    }

    /// What was built.
    public struct Summary: Sendable {
        public var files: Int
        public var contentBytes: Int
        public var imageMiB: Int
    }

    /// The `/init` of the image.
    static let initScript = """
        #!/bin/busybox sh
        # PID 1 of a Nex VM sandbox: mount the kernel's file systems, read the agent's settings from the kernel
        # command line (nex.env.KEY=VALUE), run the image's setup script, run the agent, power off after it.
        bb=/bin/busybox
        set -f  # no word below is a pattern
        $bb mount -t proc proc /proc
        $bb mount -t sysfs sysfs /sys
        $bb mount -t devtmpfs devtmpfs /dev
        $bb mount -t tmpfs -o mode=1777 tmpfs /tmp
        # No new user namespaces: the agent and its workload run unprivileged and stay so.
        echo 0 > /proc/sys/user/max_user_namespaces
        $bb ip link set lo up
        if [ -e /sys/class/net/eth0 ]; then
          # QEMU user networking: the node's channels appear at 10.0.2.100; there is no route beyond.
          $bb ip link set eth0 up && $bb ip addr add 10.0.2.15/24 dev eth0
        fi
        user=; tmpfs=; masks=
        for word in $($bb cat /proc/cmdline); do
          case "$word" in
            nex.env.*=*) export "${word#nex.env.}" ;;
            nex.image.user=*) user="${word#nex.image.user=}" ;;
            nex.image.tmpfs=*) tmpfs="${word#nex.image.tmpfs=}" ;;
            nex.image.mask=*) masks="${word#nex.image.mask=}" ;;
          esac
        done
        [ -x /nex/setup.sh ] && /nex/setup.sh
        if [ -n "$user" ]; then
          # A container image on the disk labelled nex-image: the agent and its workload run in its root,
          # read-only, with the agent at /nex run through its own loader (never the image's), a private /tmp,
          # a tmpfs for each directory the node names, and the files it names hidden behind an empty one.
          root=/tmp/image
          image=$($bb findfs LABEL=nex-image) && $bb mkdir -p $root \\
            && $bb mount -t ext4 -o ro,nodev,nosuid "$image" $root \\
            && $bb mount --bind /nex $root/nex && $bb mount -t proc proc $root/proc \\
            && $bb mount -t devtmpfs devtmpfs $root/dev && $bb mount -t tmpfs -o mode=1777 tmpfs $root/tmp \\
            || { echo "nex: cannot mount the container image"; $bb poweroff -f; }
          # Root in the image (a User-less image) has no capability, yet owns /proc's files: no sysctl (a core
          # pattern runs a program with every capability) and no sysrq for it.
          $bb mount --bind $root/proc/sys $root/proc/sys && $bb mount -o remount,bind,ro $root/proc/sys \\
            && $bb mount --bind /dev/null $root/proc/sysrq-trigger \\
            || { echo "nex: cannot make the image's /proc/sys read-only"; $bb poweroff -f; }
          for d in $(echo "$tmpfs" | $bb tr , ' '); do
            $bb mount -t tmpfs -o "mode=0755,uid=${user%:*},gid=${user#*:}" tmpfs "$root$d" \\
              || { echo "nex: cannot mount a tmpfs at $d"; $bb poweroff -f; }
          done
          for f in $(echo "$masks" | $bb tr , ' '); do
            $bb mount --bind /dev/null "$root$f" || { echo "nex: cannot mask $f"; $bb poweroff -f; }
          done
          set +f; loader=$(echo /nex/lib/ld-linux*); set -f
          NEX_AGENT_RUN_AS="$user" NEX_AGENT_IN_IMAGE=1 \\
            $bb chroot $root "$loader" --inhibit-cache --library-path /nex/lib /nex/nex-agent
        else
          LD_LIBRARY_PATH=/nex/lib /nex/nex-agent
        fi
        echo "nex-agent exited with $?"
        $bb sync
        $bb poweroff -f

        """

    /// Builds the image at `output` (replaced if it exists).
    public func build(to output: String) async throws -> Summary {
        let fm = FileManager.default
        guard fm.isExecutableFile(atPath: agent) else { throw SandboxError("no nex-agent at \(agent)") }
        guard fm.isExecutableFile(atPath: busybox), StaticExecutable.problem(at: busybox) == nil else {
            throw SandboxError("a static busybox is needed at \(busybox): apt-get install busybox-static")
        }
        guard Ext4Image.findMkfs() != nil else { throw SandboxError("mkfs.ext4 not found: apt-get install e2fsprogs") }
        if let script, !fm.isReadableFile(atPath: script) { throw SandboxError("cannot read the script \(script)") }
        let stage = fm.temporaryDirectory.appendingPathComponent("nex-rootfs-\(UUID().uuidString)").path
        defer { try? fm.removeItem(atPath: stage) }  // leaves at most a folder in the temp directory
        for directory in ["nex/lib", "bin", "proc", "sys", "dev", "tmp", "workload", "etc"] {
            try fm.createDirectory(atPath: stage + "/" + directory, withIntermediateDirectories: true)
        }
        var files = [(agent, "/nex/nex-agent"), (busybox, "/bin/busybox")]
        for library in try await NamespaceDriver.runtimeFiles(of: agent) {
            // The loader is named by path in the agent (PT_INTERP); the rest are found by name.
            // In a container image the loader's path is the image's: the agent runs through the copy in /nex/lib.
            let name = (library as NSString).lastPathComponent
            files.append((library, "/nex/lib/" + name))
            if name.hasPrefix("ld-linux") { files.append((library, library)) }
        }
        if let script { files.append((script, "/nex/setup.sh")) }
        var bytes = 0
        for (source, target) in files {
            let destination = stage + target
            try fm.createDirectory(
                atPath: (destination as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // Resolved: a library path is usually a symbolic link to the versioned file.
            try fm.copyItem(atPath: URL(fileURLWithPath: source).resolvingSymlinksInPath().path, toPath: destination)
            bytes += (try fm.attributesOfItem(atPath: destination)[.size] as? Int) ?? 0
        }
        try Self.initScript.write(toFile: stage + "/init", atomically: true, encoding: .utf8)
        for executable in ["/init", "/nex/setup.sh"] where fm.fileExists(atPath: stage + executable) {
            try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: stage + executable)
        }
        try fm.setAttributes([.posixPermissions: 0o1777], ofItemAtPath: stage + "/tmp")
        let size = sizeMiB ?? (bytes >> 20) + 64
        guard size << 20 > bytes else {
            throw SandboxError("\(size) MiB is too small for \(bytes >> 20) MiB of files")
        }
        try await Ext4Image.make(from: stage, to: output, label: "nexroot", sizeMiB: size)
        return Summary(files: files.count + 1, contentBytes: bytes, imageMiB: size)
    }
}
