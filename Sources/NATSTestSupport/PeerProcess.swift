import Foundation
import Synchronization

/// A peer client (nats-py, nats.go) run as a child process, read line by line from its standard output.
public final class PeerProcess: Sendable {
    private let process: Mutex<Process>
    private let lines = Mutex<(all: [String], errors: String)>(([], ""))

    private init(process: Process) {
        self.process = Mutex(process)
    }

    /// Starts `executable` with `arguments`; `environment` entries are added (nil values remove a variable).
    public static func start(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:]
    ) throws -> PeerProcess {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if !environment.isEmpty {
            var env = ProcessInfo.processInfo.environment
            for (k, v) in environment { env[k] = v }
            p.environment = env
        }
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let peer = PeerProcess(process: p)
        try p.run()
        Thread.detachNewThread {
            var pending = Data()
            while true {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...nl)
                    peer.lines.withLock { $0.all.append(line) }
                }
            }
        }
        Thread.detachNewThread {
            let data = err.fileHandleForReading.readDataToEndOfFile()
            peer.lines.withLock { $0.errors += String(decoding: data, as: UTF8.self) }
        }
        return peer
    }

    /// Lines printed so far.
    public var output: [String] { lines.withLock { $0.all } }

    /// Waits until at least `count` lines were printed; throws with the peer's stderr on timeout or exit.
    @discardableResult
    public func waitForLines(_ count: Int, timeout: Duration = .seconds(20)) async throws -> [String] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let out = output
            if out.count >= count { return out }
            if !process.withLock({ $0.isRunning }) {
                try await Task.sleep(for: .milliseconds(50))
                if output.count >= count { return output }
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TestEnvironment.Failure(
            "peer printed \(output.count) of \(count) lines; stderr:\n\(lines.withLock { $0.errors })")
    }

    /// Waits for the peer to exit and returns its status.
    public func waitForExit(timeout: Duration = .seconds(20)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.withLock({ $0.isRunning }) {
            guard ContinuousClock.now < deadline else {
                process.withLock { $0.terminate() }
                throw TestEnvironment.Failure("peer did not exit in time")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return process.withLock { $0.terminationStatus }
    }

    /// Sends SIGTERM (a graceful stop) and waits for the exit.
    public func terminate() async throws -> Int32 {
        process.withLock { if $0.isRunning { $0.terminate() } }
        return try await waitForExit()
    }

    /// The peer's pid.
    public var pid: Int32 { process.withLock { $0.processIdentifier } }

    /// Sends `signal` to the peer.
    public func signal(_ signal: Int32) {
        _ = Foundation.kill(pid, signal)
    }

    /// Everything the peer wrote to stderr.
    public var errorOutput: String { lines.withLock { $0.errors } }

    deinit {
        process.withLock { if $0.isRunning { $0.terminate() } }
    }
}

extension TestEnvironment {
    /// Builds a Go program under `Tests/Peers/go/<name>` against Debian's nats.go (GOPATH mode, no module
    /// proxy) into `.build/peers/`, reusing the binary while the source is unchanged. Nil without Go.
    public static func goPeer(_ name: String) throws -> String? {
        let go = "/usr/bin/go"
        guard FileManager.default.isExecutableFile(atPath: go),
            FileManager.default.fileExists(atPath: "/usr/share/gocode/src/github.com/nats-io/nats.go")
        else { return nil }
        let source = packageRoot.appendingPathComponent("Tests/Peers/go/\(name)/main.go")
        let outDir = packageRoot.appendingPathComponent(".build/peers")
        let binary = outDir.appendingPathComponent("\(name)-go")
        let fm = FileManager.default
        if let built = try? fm.attributesOfItem(atPath: binary.path)[.modificationDate] as? Date,
            let src = try? fm.attributesOfItem(atPath: source.path)[.modificationDate] as? Date, built > src
        {
            return binary.path
        }
        try fm.createDirectory(at: outDir, withIntermediateDirectories: true)
        let gopath = outDir.appendingPathComponent("gopath").path
        try run(
            go, ["build", "-o", binary.path, source.path],
            environment: [
                "GO111MODULE": "off", "GOPATH": "\(gopath):/usr/share/gocode", "GOFLAGS": "-mod=mod",
                "GOCACHE": outDir.appendingPathComponent("gocache").path,
            ])
        return binary.path
    }
}
