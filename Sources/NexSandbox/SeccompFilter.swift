/// The seccomp filter of the namespace sandbox, as the classic BPF program bubblewrap loads (`--seccomp FD`)
/// just before it executes the agent.
///
/// A deny list in the spirit of Docker's default profile: the calls that reach kernel surfaces a workload
/// has no business with (modules, kexec, mounts, namespaces, keyrings, bpf, perf, ptrace and reading other
/// processes' memory, clocks, swap, reboot) fail with EPERM; `clone3` fails with ENOSYS so that libc falls
/// back to `clone`, whose namespace flags can be checked. Anything but x86-64 (the x32 ABI, 32-bit calls)
/// kills the process.
public enum SeccompFilter {
    /// x86-64 syscall numbers refused with EPERM.
    public static let denied: [String: UInt32] = [
        "ptrace": 101, "syslog": 103, "vhangup": 153, "pivot_root": 155, "adjtimex": 159,
        "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
        "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
        "init_module": 175, "delete_module": 176, "quotactl": 179, "lookup_dcookie": 212, "clock_settime": 227,
        "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
        "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "clock_adjtime": 305,
        "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
        "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
    ]
    static let clone: UInt32 = 56
    static let clone3: UInt32 = 435
    /// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
    static let namespaceFlags: UInt32 =
        0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000
        | 0x2000_0000 | 0x4000_0000

    private static let auditArchX86_64: UInt32 = 0xC000_003E
    private static let retAllow: UInt32 = 0x7fff_0000
    private static let retKillProcess: UInt32 = 0x8000_0000
    private static func retErrno(_ errno: UInt32) -> UInt32 { 0x0005_0000 | errno }
    private static let eperm: UInt32 = 1
    private static let enosys: UInt32 = 38

    /// One BPF instruction (`struct sock_filter`).
    struct Instruction {
        var code: UInt16
        var jt: UInt8
        var jf: UInt8
        var k: UInt32
    }

    private static let loadWord: UInt16 = 0x20  // BPF_LD | BPF_W | BPF_ABS
    private static let jumpEqual: UInt16 = 0x15  // BPF_JMP | BPF_JEQ | BPF_K
    private static let jumpGreaterOrEqual: UInt16 = 0x35  // BPF_JMP | BPF_JGE | BPF_K
    private static let jumpSet: UInt16 = 0x45  // BPF_JMP | BPF_JSET | BPF_K
    private static let ret: UInt16 = 0x06  // BPF_RET | BPF_K

    /// The program, in order.
    static var program: [Instruction] {
        var p: [Instruction] = [
            Instruction(code: loadWord, jt: 0, jf: 0, k: 4),  // seccomp_data.arch
            Instruction(code: jumpEqual, jt: 1, jf: 0, k: auditArchX86_64),
            Instruction(code: ret, jt: 0, jf: 0, k: retKillProcess),
            Instruction(code: loadWord, jt: 0, jf: 0, k: 0),  // seccomp_data.nr
            Instruction(code: jumpGreaterOrEqual, jt: 0, jf: 1, k: 0x4000_0000),  // the x32 ABI
            Instruction(code: ret, jt: 0, jf: 0, k: retKillProcess),
            Instruction(code: jumpEqual, jt: 0, jf: 1, k: clone3),
            Instruction(code: ret, jt: 0, jf: 0, k: retErrno(enosys)),
        ]
        for number in denied.values.sorted() {
            p.append(Instruction(code: jumpEqual, jt: 0, jf: 1, k: number))
            p.append(Instruction(code: ret, jt: 0, jf: 0, k: retErrno(eperm)))
        }
        // clone with a namespace flag: args[0] (the flags; low word on little-endian x86-64).
        p.append(Instruction(code: jumpEqual, jt: 0, jf: 3, k: clone))
        p.append(Instruction(code: loadWord, jt: 0, jf: 0, k: 16))
        p.append(Instruction(code: jumpSet, jt: 0, jf: 1, k: namespaceFlags))
        p.append(Instruction(code: ret, jt: 0, jf: 0, k: retErrno(eperm)))
        p.append(Instruction(code: ret, jt: 0, jf: 0, k: retAllow))
        return p
    }

    /// The program as bytes (`struct sock_filter[]`, native byte order), what `--seccomp` reads.
    public static var bytes: [UInt8] {
        var out: [UInt8] = []
        for i in program {
            withUnsafeBytes(of: i.code.littleEndian) { out += $0 }
            out.append(i.jt)
            out.append(i.jf)
            withUnsafeBytes(of: i.k.littleEndian) { out += $0 }
        }
        return out
    }
}
