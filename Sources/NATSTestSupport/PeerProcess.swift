import Foundation
import NexProcess
import Synchronization

/// A peer client (nats-py, nats.go, the `nex` CLI) run as a child process, read line by line from its
/// standard output. It dies with this process (parent-death signal), so a failed test leaves nothing behind.
public final class PeerProcess: Sendable {
    private let child: ChildProcess
    private let lines = Mutex<(all: [String], errors: String)>(([], ""))

    private init(child: ChildProcess) {
        self.child = child
    }

    /// Starts `executable` with `arguments` in `directory` (default: this process's); `environment` entries
    /// are added (nil values remove a variable).
    public static func start(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:], directory: String? = nil
    ) async throws -> PeerProcess {
        let child = try await ChildProcess.spawn(
            executable: executable, arguments: arguments,
            environment: TestEnvironment.childEnvironment(environment), directory: directory, stdout: .pipe,
            stderr: .pipe)
        let peer = PeerProcess(child: child)
        if let out = child.stdout {
            LineReader.start(fd: out) { line in peer.lines.withLock { $0.all.append(line) } }
        }
        if let err = child.stderr {
            LineReader.start(fd: err) { line in peer.lines.withLock { $0.errors += line + "\n" } }
        }
        return peer
    }

    /// Lines printed so far.
    public var output: [String] { lines.withLock { $0.all } }

    private var isRunning: Bool { child.termination == nil }

    /// Waits until at least `count` lines were printed; throws with the peer's stderr on timeout or exit.
    @discardableResult
    public func waitForLines(_ count: Int, timeout: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let out = output
            if out.count >= count { return out }
            if !isRunning {
                try await Task.sleep(for: .milliseconds(50))
                if output.count >= count { return output }
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestEnvironment.Failure(
            "peer printed \(output.count) of \(count) lines; stderr:\n\(lines.withLock { $0.errors })")
    }

    /// Waits until the peer wrote `text` to stderr (a CLI's notices go there); throws on timeout or exit.
    public func waitForErrorOutput(containing text: String, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if errorOutput.contains(text) { return }
            if !isRunning {
                try await Task.sleep(for: .milliseconds(50))
                if errorOutput.contains(text) { return }
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestEnvironment.Failure("peer did not write \"\(text)\" to stderr; it wrote:\n\(errorOutput)")
    }

    /// Waits for the peer to exit and returns its status (128 + signal when killed by one).
    public func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let (termination, timedOut) = await child.wait(killingAfter: timeout)
        if timedOut { throw TestEnvironment.Failure("peer did not exit in time") }
        return termination.code
    }

    /// Sends SIGTERM (a graceful stop) and waits for the exit.
    public func terminate() async throws -> Int32 {
        child.signal(SIGTERM)
        return try await waitForExit()
    }

    /// The peer's pid.
    public var pid: Int32 { child.pid }

    /// Sends `signal` to the peer (to it alone, not its process group).
    public func signal(_ signal: Int32) {
        child.signal(signal, group: false)
    }

    /// Sends `signal` to the peer's process group (the peer and whatever it started in its group).
    public func signalGroup(_ signal: Int32) {
        child.signal(signal, group: true)
    }

    /// Everything the peer wrote to stderr.
    public var errorOutput: String { lines.withLock { $0.errors } }

    deinit {
        child.signal(SIGKILL)
    }
}

extension TestEnvironment {
    /// Builds a Go program under `Tests/Peers/go/<name>` against Debian's nats.go (GOPATH mode, no module
    /// proxy) into `.build/peers/`, reusing the binary while the source is unchanged. Nil without Go.
    public static func goPeer(_ name: String) async throws -> String? {
        let go = "/usr/bin/go"
        guard FileManager.default.isExecutableFile(atPath: go),
            FileManager.default.fileExists(atPath: "/usr/share/gocode/src/github.com/nats-io/nats.go")
        else { return nil }
        let source = packageRoot.appendingPathComponent("Tests/Peers/go/\(name)/main.go")
        let outDir = packageRoot.appendingPathComponent(".build/peers")
        let binary = outDir.appendingPathComponent("\(name)-go")
        let fm = FileManager.default
        // Not built yet (or no source): built below.
        if let built = try? fm.attributesOfItem(atPath: binary.path)[.modificationDate] as? Date,
            let src = try? fm.attributesOfItem(atPath: source.path)[.modificationDate] as? Date, built > src
        {
            return binary.path
        }
        try fm.createDirectory(at: outDir, withIntermediateDirectories: true)
        let gopath = outDir.appendingPathComponent("gopath").path
        try await run(
            go, ["build", "-o", binary.path, source.path],
            environment: [
                "GO111MODULE": "off", "GOPATH": "\(gopath):/usr/share/gocode", "GOFLAGS": "-mod=mod",
                "GOCACHE": outDir.appendingPathComponent("gocache").path,
            ])
        return binary.path
    }
}
