import Foundation
public import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// Runs a native service: the artifact is exec'd with the deploy's argv and environment; stdout goes to the
/// logs at info level and stderr at error level; the exit code is reported when it ends.
public final class NativeServiceRunner: WorkloadRunner {
    private let process = Mutex<ChildProcess?>(nil)

    public init() {}

    /// The environment a service gets: the deploy's variables with keys upper-cased (as Nex does; the node
    /// adds `NEX_HOSTSERVICES_*` connection settings there when configured), a minimal PATH, and the
    /// `NEX_*` facts about itself.
    public static func environment(for request: AgentDeployRequest) -> [String: String] {
        var env = ["PATH": "/usr/local/bin:/usr/bin:/bin"]
        // An image's variables keep their case (`http_proxy`, say): the node merged them with the deploy's, upper-cased.
        let image = request.workingDirectory != nil
        for (key, value) in request.environment { env[image ? key : key.uppercased()] = value }
        env["NEX_WORKLOAD_ID"] = request.workloadID
        env["NEX_WORKLOAD_NAME"] = request.workloadName
        env["NEX_NAMESPACE"] = request.namespace
        return env
    }

    public func start(_ request: AgentDeployRequest, output: WorkloadOutput) async throws {
        let path = request.artifactPath
        // An artifact arrives as plain bytes: make it executable for its owner only. An image's program is the
        // image's own, and its root is read-only.
        if request.workingDirectory == nil { _ = chmod(path, 0o700) }
        let directory = request.workingDirectory ?? URL(fileURLWithPath: path).deletingLastPathComponent().path
        var started: ChildProcess?
        // ETXTBSY: a process that forked while the node was writing the artifact may hold a copy of the
        // writable descriptor for a moment (until its exec closes it). Retried, as Go's os/exec does, for up to
        // about 5 s: on a loaded machine a forked child can take that long to reach its exec (500 ms was seen
        // to fail a test run).
        for attempt in 0..<50 {
            do {
                started = try await ChildProcess.spawn(
                    executable: path, arguments: request.argv,
                    environment: Self.environment(for: request),
                    directory: directory, stdout: .pipe, stderr: .pipe,
                    // An image's program may run as its root user: root without capabilities, in any sandbox.
                    dropCapabilities: request.workingDirectory != nil)
                break
            } catch  where error.errno == ETXTBSY && attempt < 49 {
                // Cancelled: the next try runs at once, and there are at most 50.
                try? await Task.sleep(for: .milliseconds(min(10 << (attempt / 5), 200)))
            } catch {
                throw WorkloadStartError("\(error)")
            }
        }
        guard let child = started else { throw WorkloadStartError("cannot start \(path): text file busy") }
        process.withLock { $0 = child }
        let streams = [(child.stdout, LogEntry.info), (child.stderr, LogEntry.error)]
        let open = Atomic<Int>(streams.count)
        let report = { @Sendable in
            Task {
                let termination = await child.wait()
                output.exited(Int(termination.code), "workload \(termination)")
            }
        }
        for case (let fd?, let level) in streams {
            // The exit is reported after the last line, so logs never trail the undeploy event.
            LineReader.start(fd: fd, onLine: { output.log($0, level) }) {
                if open.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { report() }
            }
        }
    }

    public func stop(grace: Duration) async {
        guard let child = process.withLock({ $0 }) else { return }
        await child.terminate(grace: grace)
    }
}
