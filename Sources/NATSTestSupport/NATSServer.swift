import Foundation
import NexProcess
import Synchronization

/// A real `nats-server` process for tests, demos and benchmarks: its own temp dir, an ephemeral port read
/// from the ports file, and always stopped (``stop()``, or on deinit). It dies with this process (parent-death
/// signal), so a crashed or killed test run leaves no server behind.
public final class NATSServer: Sendable {
    /// How to start the server.
    public struct Options: Sendable {
        /// Enable JetStream (store in the server's temp dir).
        public var jetStream = false
        /// Contents of a config file passed with `-c` (written into the temp dir).
        public var config: String?
        /// Extra command-line arguments.
        public var arguments: [String] = []
        /// A fixed client port; nil picks a free one.
        public var port: Int?
        /// Cluster settings; nil runs standalone.
        public var cluster: Cluster?
        /// Server name (`-n`).
        public var name: String?
        /// Where JetStream stores data; nil uses the server's own temp dir.
        public var storeDirectory: String?

        /// Cluster membership of one server.
        public struct Cluster: Sendable {
            public var name: String
            /// Fixed route port; nil picks a free one.
            public var port: Int?
            /// Route URLs of the other members.
            public var routes: [String]
            public init(name: String = "test-cluster", port: Int? = nil, routes: [String] = []) {
                self.name = name
                self.port = port
                self.routes = routes
            }
        }

        public init(jetStream: Bool = false, config: String? = nil, arguments: [String] = []) {
            self.jetStream = jetStream
            self.config = config
            self.arguments = arguments
        }
    }

    /// `nats://127.0.0.1:PORT`.
    public let url: String
    /// The client port.
    public let port: Int
    /// `nats://127.0.0.1:ROUTEPORT` when clustered.
    public let clusterURL: String?
    /// The server's own temp dir (store, config, log).
    public let directory: URL
    let options: Options
    private let process: Mutex<ChildProcess?>
    /// The last process, kept after a stop so that ``restart()`` can wait until its port is free.
    private let previous: Mutex<ChildProcess?>

    private init(url: String, port: Int, clusterURL: String?, directory: URL, options: Options, process: ChildProcess) {
        self.url = url
        self.port = port
        self.clusterURL = clusterURL
        self.directory = directory
        self.options = options
        self.process = Mutex(process)
        self.previous = Mutex(process)
    }

    deinit {
        process.withLock { $0?.signal(SIGKILL) }
    }

    /// Starts a server and waits until it listens.
    public static func start(_ options: Options = Options()) async throws -> NATSServer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nats-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try await launch(options, in: dir)
    }

    /// Runs `body` with a fresh server and stops it afterwards, also when `body` throws.
    public static func with<T>(
        _ options: Options = Options(), _ body: (NATSServer) async throws -> T
    ) async throws -> T {
        let server = try await start(options)
        do {
            let result = try await body(server)
            server.stop()
            await server.stopped()
            return result
        } catch {
            server.stop()
            await server.stopped()
            throw error
        }
    }

    private static func launch(_ options: Options, in dir: URL) async throws -> NATSServer {
        let binary = try TestEnvironment.natsServerBinary()
        let portsDir = dir.appendingPathComponent("ports")
        try? FileManager.default.removeItem(at: portsDir)  // usually none; stale files are told apart by pid
        try FileManager.default.createDirectory(at: portsDir, withIntermediateDirectories: true)
        var args = ["-a", "127.0.0.1", "-p", options.port.map(String.init) ?? "-1", "--ports_file_dir", portsDir.path]
        if options.jetStream {
            args += ["-js", "-sd", options.storeDirectory ?? dir.appendingPathComponent("js").path]
        }
        if let name = options.name { args += ["-n", name] }
        if let cluster = options.cluster {
            args += [
                "-cluster", "nats://127.0.0.1:\(cluster.port.map(String.init) ?? "-1")", "--cluster_name", cluster.name,
            ]
            if !cluster.routes.isEmpty { args += ["-routes", cluster.routes.joined(separator: ",")] }
        }
        if let config = options.config {
            let file = dir.appendingPathComponent("server.conf")
            try config.write(to: file, atomically: true, encoding: .utf8)
            args += ["-c", file.path]
        }
        args += options.arguments

        let log = dir.appendingPathComponent("server.log")
        let logFD = open(log.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw TestEnvironment.Failure("cannot open \(log.path)") }
        defer { close(logFD) }
        let process = try await ChildProcess.spawn(
            executable: binary, arguments: args, environment: ProcessInfo.processInfo.environment,
            stdout: .descriptor(logFD), stderr: .descriptor(logFD))

        let portsFile = portsDir.appendingPathComponent("nats-server_\(process.pid).ports")
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            // Not written yet, or only partly: tried again until the deadline.
            if let data = try? Data(contentsOf: portsFile),
                let ports = try? JSONDecoder().decode(PortsFile.self, from: data),
                let client = ports.nats.first, let port = URLComponents(string: client)?.port
            {
                return NATSServer(
                    url: "nats://127.0.0.1:\(port)", port: port, clusterURL: ports.cluster?.first, directory: dir,
                    options: options, process: process)
            }
            if process.termination != nil { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        process.signal(SIGKILL)
        // No log: the failure is still reported, only without the server's words.
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        throw TestEnvironment.Failure(
            "nats-server did not start (\(args.joined(separator: " "))):\n\(output.suffix(2000))")
    }

    struct PortsFile: Decodable {
        var nats: [String]
        var cluster: [String]?
    }

    /// Stops the server: SIGTERM now, SIGKILL if it still runs 5 s later. Returns at once (callable from
    /// `defer`); ``stopped()`` waits for the exit.
    public func stop() {
        guard
            let p = process.withLock({ p in
                defer { p = nil }
                return p
            })
        else { return }
        p.signal(SIGTERM)
        Task {
            try await Task.sleep(for: .seconds(5))
            p.signal(SIGKILL)
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    public func kill() {
        process.withLock { p in
            defer { p = nil }
            p?.signal(SIGKILL)
        }
    }

    /// Waits until the last started process has exited (after ``stop()`` or ``kill()``).
    public func stopped() async {
        if let p = previous.withLock({ $0 }) { _ = await p.wait() }
    }

    /// Starts a new server process on the same port, temp dir and options (after ``stop()`` or ``kill()``).
    public func restart() async throws -> NATSServer {
        await stopped()
        var opts = options
        opts.port = port
        if var cluster = opts.cluster, let clusterURL, let p = URLComponents(string: clusterURL)?.port {
            cluster.port = p
            opts.cluster = cluster
        }
        return try await Self.launch(opts, in: directory)
    }

    /// The process id while running (for `nats-server --signal`).
    public var processID: Int32? {
        process.withLock { p in p.flatMap { $0.termination == nil ? $0.pid : nil } }
    }

    /// The server's log so far.
    public var log: String {
        // No log yet: nothing logged so far.
        (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? ""
    }
}
