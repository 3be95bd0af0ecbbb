import CNexSpawn
import Foundation
import Synchronization

/// A child process started with fork/exec through a small C shim, so that the child gets exactly the
/// descriptors, signal dispositions and process group it should (Foundation's `Process` offers neither a
/// parent-death signal nor default dispositions for signals NIO ignores).
///
/// Children are spawned from one dedicated thread that lives as long as the process (``ProcessThread``),
/// because the kernel's parent-death signal fires when the *spawning thread* exits: a pool thread that retires
/// would kill them. The same thread learns when each child ends.
public final class ChildProcess: Sendable {
    /// Where a standard stream of the child goes.
    public enum Stream: Sendable {
        /// `/dev/null`.
        case null
        /// This process's own descriptor (0, 1 or 2).
        case inherit
        /// An existing descriptor (not closed by the spawn).
        case descriptor(Int32)
        /// A new pipe; read the other end with ``ChildProcess/stdout`` / ``ChildProcess/stderr``.
        case pipe
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        /// The exit code, or 128 + signal as shells report it.
        public var code: Int32 {
            switch self {
            case .exited(let c): c
            case .signalled(let s): 128 + s
            }
        }

        public var description: String {
            switch self {
            case .exited(let c): "exited with code \(c)"
            case .signalled(let s): "killed by signal \(s)"
            }
        }
    }

    /// The child's pid.
    public let pid: Int32
    /// The read end of the child's stdout when it was `.pipe`.
    public let stdout: Int32?
    /// The read end of the child's stderr when it was `.pipe`.
    public let stderr: Int32?
    private let state = Mutex(WaitState())

    private struct WaitState {
        var termination: Termination?
        var waiters: [CheckedContinuation<Termination, Never>] = []
    }

    private init(pid: Int32, stdout: Int32?, stderr: Int32?) {
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
    }

    /// Starts `executable`. `environment` is the child's whole environment. `extraDescriptors` become the
    /// child's descriptors 3, 4, … (not closed by the spawn). The child writes its pid into each of
    /// `cgroupProcs` (cgroup.procs files) before it executes. With `killWithParent`, the child gets SIGKILL
    /// when this process dies, however it dies. With `dropCapabilities`, it executes with no capability and
    /// no_new_privs (root keeps only its user id).
    public static func spawn(
        executable: String, arguments: [String] = [], environment: [String: String],
        directory: String? = nil, stdout: Stream = .inherit, stderr: Stream = .inherit,
        extraDescriptors: [Int32] = [], cgroupProcs: [String] = [], newProcessGroup: Bool = true,
        killWithParent: Bool = true, dropCapabilities: Bool = false
    ) async throws(SpawnError) -> ChildProcess {
        var toClose: [Int32] = []
        var readEnds: [Int32?] = [nil, nil]
        var fds: [Int32] = [-1, -1, -1]
        for (index, stream) in [(1, stdout), (2, stderr)] {
            switch stream {
            case .null: fds[index] = -1
            case .inherit: fds[index] = Int32(index)
            case .descriptor(let fd): fds[index] = fd
            case .pipe:
                var ends: [Int32] = [0, 0]
                guard nex_pipe_cloexec(&ends) == 0 else {
                    for fd in toClose { close(fd) }
                    for case let fd? in readEnds { close(fd) }
                    throw SpawnError(executable: executable, errno: errno)
                }
                readEnds[index - 1] = ends[0]
                fds[index] = ends[1]
                toClose.append(ends[1])
            }
        }
        let argv = [executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        let fdsCopy = fds + extraDescriptors
        // Awaited, not blocked on: callers run on event loops and the cooperative pool.
        let spawned = await ProcessThread.shared.run {
            var step: Int32 = 0
            let pid = withCStrings(argv) { argvPointers in
                withCStrings(envp) { envPointers in
                    withCStrings(cgroupProcs) { cgroupPointers in
                        nex_spawn(
                            executable, argvPointers, envPointers, directory, fdsCopy, Int32(fdsCopy.count),
                            cgroupPointers, newProcessGroup ? 1 : 0, killWithParent ? SIGKILL : 0,
                            dropCapabilities ? 1 : 0, &step)
                    }
                }
            }
            return (pid, step)
        }
        for fd in toClose { close(fd) }
        guard let (pid, failedStep) = spawned else {
            for case let fd? in readEnds { close(fd) }
            throw SpawnError(executable: executable, errno: ProcessThread.shared.setupError)
        }
        guard pid > 0 else {
            for case let fd? in readEnds { close(fd) }
            let step: SpawnError.Step =
                switch failedStep {
                case NEX_SPAWN_STEP_CGROUP: .joinCgroups(cgroupProcs)
                case NEX_SPAWN_STEP_CHDIR: .changeDirectory(directory ?? "")
                case NEX_SPAWN_STEP_CAPABILITIES: .dropCapabilities
                default: .exec
                }
            throw SpawnError(executable: executable, errno: -pid, step: step)
        }
        let child = ChildProcess(pid: pid, stdout: readEnds[0], stderr: readEnds[1])
        ProcessThread.shared.watch(pid: pid) { termination in child.ended(termination) }
        return child
    }

    /// The termination once the child has ended, else nil.
    public var termination: Termination? { state.withLock { $0.termination } }

    /// Waits until the child ends.
    public func wait() async -> Termination {
        await withCheckedContinuation { continuation in
            let done = state.withLock { s -> Termination? in
                if let t = s.termination { return t }
                s.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Sends `signal` to the child (to its whole process group when it has its own).
    public func signal(_ signal: Int32, group: Bool = true) {
        guard termination == nil else { return }
        if group, Foundation.kill(-pid, signal) == 0 { return }
        _ = Foundation.kill(pid, signal)
    }

    /// SIGTERM, then SIGKILL when the child is still running after `grace`; returns how it ended.
    @discardableResult
    public func terminate(grace: Duration = .seconds(5)) async -> Termination {
        signal(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: grace)
            self.signal(SIGKILL)
        }
        let result = await wait()
        killer.cancel()
        return result
    }

    /// Records how the child ended and resumes its waiters.
    private func ended(_ termination: Termination) {
        let waiters = state.withLock { s in
            s.termination = termination
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: termination) }
    }
}

/// Why a child could not be started.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    /// The step of a start that failed: the error names what it was about, not always the executable.
    public enum Step: Sendable, Equatable {
        case joinCgroups([String])
        case changeDirectory(String)
        case dropCapabilities
        case exec
    }

    public var executable: String
    public var errno: Int32
    public var step: Step

    public init(executable: String, errno: Int32, step: Step = .exec) {
        self.executable = executable
        self.errno = errno
        self.step = step
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        return switch step {
        case .exec: "cannot start \(executable): \(reason)"
        case .changeDirectory(let directory):
            "cannot start \(executable): cannot enter its work directory \(directory): \(reason)"
        case .dropCapabilities: "cannot start \(executable): cannot drop its capabilities: \(reason)"
        case .joinCgroups(let files):
            "cannot start \(executable): cannot join its cgroups (\(files.joined(separator: ", "))): \(reason)"
        }
    }
}

/// Calls `body` with a NULL-terminated C array of `strings`.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

extension ChildProcess {
    /// Waits until the child ends; when it still runs after `timeout`, kills it (SIGKILL, its whole group)
    /// and reports that the timeout fired.
    public func wait(killingAfter timeout: Duration) async -> (termination: Termination, timedOut: Bool) {
        let killer = Task { () -> Bool in
            do { try await Task.sleep(for: timeout) } catch { return false }
            self.signal(SIGKILL)
            return true
        }
        let termination = await wait()
        killer.cancel()
        return (termination, await killer.value)
    }
}
