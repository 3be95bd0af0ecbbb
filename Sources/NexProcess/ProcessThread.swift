import CNexSpawn
import Foundation
import Synchronization

/// The one long-lived thread that starts every child process and learns when each one ends.
///
/// It starts them because a child's parent-death signal is tied to the thread that forked it, and this thread
/// never exits. It learns of their ends through one pidfd per child, all watched by the epoll instance it waits
/// in: one thread for every child of the process (a thread blocked in `waitpid` per child cost one each).
final class ProcessThread: Sendable {
    /// The process's only instance, started on first use.
    static let shared = ProcessThread()

    /// Called once, on this thread, with how a watched child ended.
    typealias ExitHandler = @Sendable (ChildProcess.Termination) -> Void

    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var watched: [Int32: (pidfd: Int32, onExit: ExitHandler)] = [:]
    }

    private let state = Mutex(State())
    private let epoll: Int32
    private let wakeup: Int32
    /// Why the thread could not be set up (errno), or 0.
    let setupError: Int32
    /// The tag of `wakeup` in epoll (children are tagged with their pids, which are positive).
    private static let wakeupTag: Int64 = -1

    private init() {
        epoll = nex_epoll_create()
        var error = epoll < 0 ? errno : 0
        wakeup = nex_eventfd()
        if error == 0, wakeup < 0 { error = errno }
        if error == 0, nex_epoll_add(epoll, wakeup, Self.wakeupTag) != 0 { error = errno }
        setupError = error
        guard error == 0 else { return }
        startThread(named: "nex-children") { [self] in loop() }
    }

    /// Runs `body` on the thread and waits (without blocking the caller's thread) for its result; nil when the
    /// thread could not be set up (``setupError``).
    func run<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R? {
        guard setupError == 0 else { return nil }
        return await withCheckedContinuation { continuation in
            enqueue { continuation.resume(returning: body()) }
        }
    }

    /// Calls `onExit` once child `pid` has ended, and reaps it. A child that ended already is reaped at once
    /// (it stays a zombie until then, so no end is missed).
    func watch(pid: Int32, onExit: @escaping ExitHandler) {
        guard setupError == 0 else { return Self.waitOnThreadOfItsOwn(pid: pid, onExit: onExit) }
        enqueue { [self] in
            let pidfd = nex_pidfd_open(pid)
            guard pidfd >= 0, nex_epoll_add(epoll, pidfd, Int64(pid)) == 0 else {
                // Out of descriptors: this child gets a thread of its own, as every child once did.
                if pidfd >= 0 { close(pidfd) }
                return Self.waitOnThreadOfItsOwn(pid: pid, onExit: onExit)
            }
            state.withLock { $0.watched[pid] = (pidfd, onExit) }
        }
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) {
        state.withLock { $0.jobs.append(job) }
        var one: UInt64 = 1
        // An eventfd's counter cannot overflow from these wake-ups; a failed write leaves the count as it was.
        _ = write(wakeup, &one, 8)
    }

    private func loop() {
        var tags = [Int64](repeating: 0, count: 16)
        while true {
            let count = nex_epoll_wait_tags(epoll, &tags, Int32(tags.count))
            guard count > 0 else {
                // Only EINTR can happen with a valid instance and buffer; anything else would spin here unseen.
                if count < 0 && errno != EINTR {
                    preconditionFailure("nex-children: epoll_wait failed: \(String(cString: strerror(errno)))")
                }
                continue
            }
            for tag in tags[0..<Int(count)] {
                if tag == Self.wakeupTag {
                    var value: UInt64 = 0
                    _ = read(wakeup, &value, 8)  // resets the counter; the jobs say what to do
                    let jobs = state.withLock { s in
                        defer { s.jobs.removeAll() }
                        return s.jobs
                    }
                    for job in jobs { job() }
                } else {
                    reap(Int32(truncatingIfNeeded: tag))
                }
            }
        }
    }

    /// Reaps `pid`, whose pidfd is readable: it has ended.
    private func reap(_ pid: Int32) {
        var status: Int32 = 0
        var result: Int32
        repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
        if result == 0 { return }  // not ended after all (a spurious wake-up): still watched
        guard let entry = state.withLock({ $0.watched.removeValue(forKey: pid) }) else { return }
        close(entry.pidfd)  // also takes it out of epoll
        entry.onExit(result == pid ? Self.termination(status) : Self.statusLost)
    }

    /// What a child that was reaped elsewhere (ECHILD) reports: its status is lost, and a lost status must not
    /// read as success.
    static let statusLost = ChildProcess.Termination.exited(-1)

    static func termination(_ status: Int32) -> ChildProcess.Termination {
        (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
    }

    /// The fallback when no pidfd can be had: a thread of its own blocks in `waitpid`.
    private static func waitOnThreadOfItsOwn(pid: Int32, onExit: @escaping ExitHandler) {
        startThread(named: "nex-reaper-\(pid)") {
            var status: Int32 = 0
            var result: Int32
            repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
            onExit(result == pid ? termination(status) : statusLost)
        }
    }
}
