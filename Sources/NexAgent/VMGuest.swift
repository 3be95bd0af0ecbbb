import Foundation
import NexModels
import NexProcess
import NexWorkloads

/// The agent's side of a `vm` sandbox's channels to the node (``VMChannel``): the control channel that
/// delivers its settings and its artifact, and the TCP dials that replace the descriptors a host agent gets.
enum VMGuest {
    /// Drops root for `uid` and `gid` (no supplementary groups), with at most `processLimit` processes
    /// for that user: the VM's own limit on a fork bomb, as the namespace sandbox's pids cgroup is.
    static func becomeUnprivileged(
        uid: UInt32, gid: UInt32, processLimit: Int = 256
    ) -> Result<Void, WorkloadStartError> {
        var limit = rlimit(rlim_cur: rlim_t(processLimit), rlim_max: rlim_t(processLimit))
        guard setrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &limit) == 0, setgroups(0, nil) == 0,
            setgid(gid) == 0, setuid(uid) == 0
        else {
            return .failure(WorkloadStartError("cannot run as user \(uid): \(String(cString: strerror(errno)))"))
        }
        return .success(())
    }

    /// Dials `address` (`host:port`), retrying for a while: the guest's network may still be coming up.
    static func dial(_ address: String) -> Result<Int32, WorkloadStartError> {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            return .failure(WorkloadStartError("malformed address \(address) (host:port)"))
        }
        let host = String(address[..<colon])
        var lastError = "not tried"
        for _ in 0..<100 {
            do { return .success(try SocketRelay.connectTCP(host: host, port: port)) } catch {
                lastError = "\(error)"
            }
            usleep(100_000)
        }
        return .failure(WorkloadStartError("cannot reach the node at \(address): \(lastError)"))
    }

    /// Waits on the control channel for the agent's settings (sent by the node once this VM is restored
    /// for an agent): environment variables to apply over the process's own.
    static func awaitSettings(_ control: Int32) -> Result<[String: String], WorkloadStartError> {
        guard let line = BlockingIO.readLine(control) else {
            return .failure(WorkloadStartError("the node closed the control channel before sending settings"))
        }
        // Reported below as malformed; which byte was wrong would not help the node.
        guard let settings = try? JSONDecoder().decode([String: String].self, from: Data(line.utf8)) else {
            return .failure(WorkloadStartError("malformed settings from the node"))
        }
        return .success(settings)
    }

    /// Asks the node for the workload's artifact and writes it to `path` (executable).
    static func fetchArtifact(_ control: Int32, to path: String) throws {
        let request = Array(VMChannel.artifactRequest.utf8)
        guard BlockingIO.writeAll(control, request) else { throw WorkloadStartError("the control channel is closed") }
        guard let header = BlockingIO.readLine(control) else { throw WorkloadStartError("no answer for the artifact") }
        guard header.hasPrefix("OK "), let size = Int(header.dropFirst(3)), size >= 0 else {
            throw WorkloadStartError("the node cannot send the artifact: \(header)")
        }
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o755)
        guard out >= 0 else { throw WorkloadStartError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(out) }
        var remaining = size
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while remaining > 0 {
            let n = buffer.withUnsafeMutableBytes { read(control, $0.baseAddress, min($0.count, remaining)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw WorkloadStartError("the artifact was cut short (\(remaining) bytes missing)") }
            guard BlockingIO.writeAll(out, Array(buffer[0..<n])) else {
                throw WorkloadStartError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            remaining -= n
        }
    }
}
