import CNexSpawn
import Foundation
import NIOCore
import NexModels
import NexProcess
import Synchronization

/// The `firecracker` driver: one Firecracker microVM per agent, configured through its API socket, booting
/// `kernel_filepath` with the image `nex rootfs` builds (`rootfs_filepath`, read-only).
///
/// The guest has no network device: the agent reaches the node over vsock only. Firecracker turns a guest
/// connection to the host (CID 2) on port P into a connection to the Unix socket `<vsock>_P`, where the node
/// listens and relays: P = 4223 to the agent's link (everything between node and agent), and P = 4224 is the
/// control channel that serves the artifact (as the `vm` driver's does). The agent's
/// settings travel on the kernel command line (`nex.env.KEY=VALUE`, read by the image's /init). The sockets
/// live in a private `/tmp/nex-fc-XXXXXX` (a socket path must fit in 108 bytes).
///
/// Firecracker cannot run on these machines (no hardware KVM), so preflight reports the driver unavailable;
/// the API sequence is tested against a fake API server.
public struct FirecrackerDriver: SandboxDriver {
    public var name: String { "firecracker" }
    public var isSandboxed: Bool { true }

    /// The vsock ports of the agent's link and of the control channel (the artifact).
    public static let linkPort = 4223
    public static let controlPort = 4224

    let firecracker: String
    let kernel: String
    let rootfs: String
    let agentOutput: @Sendable (String, String) -> Void

    public init(
        firecracker: String, kernel: String, rootfs: String,
        agentOutput: @escaping @Sendable (_ agentID: String, _ line: String) -> Void = { _, _ in }
    ) {
        self.firecracker = firecracker
        self.kernel = kernel
        self.rootfs = rootfs
        self.agentOutput = agentOutput
    }

    /// The firecracker binary when everything the driver needs is here: the binary, a kernel, a root
    /// filesystem (`nex rootfs`) and a KVM device; otherwise what is missing.
    public static func requirements(kernel: String?, rootfs: String?) -> Result<String, SandboxError> {
        let fm = FileManager.default
        guard let binary = ["/usr/bin/firecracker", "/usr/local/bin/firecracker"].first(where: fm.isExecutableFile)
        else { return .failure(SandboxError("no firecracker binary (/usr/bin or /usr/local/bin)")) }
        guard let kernel, fm.isReadableFile(atPath: kernel) else {
            return .failure(SandboxError("kernel_filepath is not set or not readable"))
        }
        guard let rootfs, fm.isReadableFile(atPath: rootfs) else {
            return .failure(SandboxError("rootfs_filepath is not set or not readable (build one with `nex rootfs`)"))
        }
        let kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)
        guard kvm >= 0 else { return .failure(SandboxError("/dev/kvm cannot be opened")) }
        close(kvm)
        return .success(binary)
    }

    /// The API requests that configure and start one VM, in order (method, path, JSON body).
    func requests(_ spec: AgentLaunchSpec, vsock: String) -> [(method: String, path: String, body: String)] {
        let settings = [
            AgentEnvironment.agentID: spec.agentID,
            AgentEnvironment.linkVsockPort: String(Self.linkPort),
            AgentEnvironment.controlVsockPort: String(Self.controlPort),
        ]
        let environment = settings.sorted { $0.key < $1.key }.map { "nex.env.\($0.key)=\($0.value)" }
        let bootArgs = (["console=ttyS0", "reboot=k", "panic=1", "pci=off", "ro", "init=/init"] + environment)
            .joined(separator: " ")
        return [
            (
                "PUT", "/machine-config",
                Self.json(MachineConfig(vcpuCount: max(spec.vcpuCount, 1), memSizeMib: spec.memoryMiB))
            ),
            ("PUT", "/boot-source", Self.json(BootSource(kernelImagePath: kernel, bootArgs: bootArgs))),
            ("PUT", "/drives/rootfs", Self.json(Drive(driveId: "rootfs", pathOnHost: rootfs))),
            ("PUT", "/vsock", Self.json(Vsock(guestCid: 3, udsPath: vsock))),
            ("PUT", "/actions", Self.json(Action(actionType: "InstanceStart"))),
        ]
    }

    // The API's bodies (snake_case on the wire).
    private struct MachineConfig: Encodable {
        var vcpuCount: Int
        var memSizeMib: Int
    }
    private struct BootSource: Encodable {
        var kernelImagePath: String
        var bootArgs: String
    }
    private struct Drive: Encodable {
        var driveId: String
        var pathOnHost: String
        var isRootDevice = true
        var isReadOnly = true
    }
    private struct Vsock: Encodable {
        var guestCid: Int
        var udsPath: String
    }
    private struct Action: Encodable {
        var actionType: String
    }

    private static func json(_ body: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        do { return String(decoding: try encoder.encode(body), as: UTF8.self) } catch {
            // Strings, numbers and booleans: encoding them cannot fail.
            preconditionFailure("a Firecracker API body could not be encoded: \(error)")
        }
    }

    public func launch(_ spec: AgentLaunchSpec) async throws -> any AgentSandbox {
        var template = Array("/tmp/nex-fc-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw SandboxError("cannot make a directory under /tmp: \(String(cString: strerror(errno)))")
        }
        let sockets = String(cString: made)
        let api = sockets + "/firecracker.sock"
        let vsock = sockets + "/vsock.sock"
        // The node's ends of the guest's two connections, listening before the VM can dial them.
        // The link's agent end is closed by the pool after launch: keep a copy for the guest's one connection.
        let agentEnd = HandOff(dup(spec.linkDescriptor))
        let artifact = spec.workDirectory + "/workload"
        let sessions = ControlSessions()
        var listeners: [Acceptor] = []
        let process: ChildProcess
        do {
            listeners.append(
                try await Acceptor.start(listener: try Acceptor.listenUnix(path: "\(vsock)_\(Self.linkPort)")) {
                    client in
                    if let end = agentEnd.take() {
                        _ = SocketRelay.relay(client, toDescriptor: end)  // a failure closes both ends
                    } else {
                        client.close(promise: nil)
                    }
                })
            listeners.append(
                try await Acceptor.start(listener: try Acceptor.listenUnix(path: "\(vsock)_\(Self.controlPort)")) {
                    client in sessions.serve(client, settings: [:], artifact: artifact)
                })
            process = try await ChildProcess.spawn(
                executable: firecracker, arguments: ["--api-sock", api, "--id", spec.agentID],
                environment: ["PATH": "/usr/bin:/bin"], directory: spec.workDirectory, stdout: .pipe, stderr: .pipe)
        } catch {
            for listener in listeners { listener.close() }
            sessions.endAll()
            if let end = agentEnd.take() { close(end) }
            try? FileManager.default.removeItem(atPath: sockets)  // best effort: leaves at most a few socket files
            throw error
        }
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            let output = agentOutput
            let id = spec.agentID
            LineReader.start(fd: fd) { output(id, $0) }
        }
        let sandbox = FirecrackerSandbox(
            agentID: spec.agentID, process: process, listeners: listeners,
            sessions: sessions, agentEnd: agentEnd, socketDirectory: sockets)
        do {
            try await UnixHTTP.waitForSocket(api, timeout: .seconds(5))
            for request in requests(spec, vsock: vsock) {
                let status = try await UnixHTTP.send(request.method, request.path, body: request.body, to: api)
                guard (200..<300).contains(status.code) else {
                    throw SandboxError("firecracker \(request.method) \(request.path): \(status.code) \(status.body)")
                }
            }
        } catch {
            await sandbox.destroy(grace: .seconds(1))
            throw error
        }
        return sandbox
    }
}

struct FirecrackerSandbox: AgentSandbox {
    let agentID: String
    /// The agent fetches its artifact over the control channel into the guest's /tmp.
    var workDirectoryInside: String { "/tmp/nex" }
    let process: ChildProcess
    let listeners: [Acceptor]
    let sessions: ControlSessions
    let agentEnd: HandOff
    let socketDirectory: String

    func wait() async -> ChildProcess.Termination {
        let termination = await process.wait()
        release()
        return termination
    }

    func destroy(grace: Duration) async {
        await process.terminate(grace: grace)
        release()
    }

    private func release() {
        for listener in listeners { listener.close() }
        sessions.endAll()
        if let end = agentEnd.take() { close(end) }
        try? FileManager.default.removeItem(atPath: socketDirectory)  // best effort: leaves at most a few socket files
    }

    /// A guest has no network: services would reach their servers over more vsock ports (not built yet).
    func allowConnections(to endpoints: [NetworkEndpoint]) async throws -> [NetworkEndpoint] {
        guard endpoints.isEmpty else {
            throw SandboxError("the firecracker driver does not forward services' NATS connections yet")
        }
        return []
    }
}

/// A descriptor handed over at most once (to a relay), or closed by its owner if never taken.
final class HandOff: Sendable {
    private let descriptor: Mutex<Int32?>
    init(_ fd: Int32) { descriptor = Mutex(fd) }
    func take() -> Int32? {
        descriptor.withLock { d in
            defer { d = nil }
            return d
        }
    }
}

/// HTTP/1.1 over a Unix socket, enough for Firecracker's API: one request per connection, JSON bodies.
enum UnixHTTP {
    struct Response: Sendable {
        var code: Int
        var body: String
    }

    /// Waits until something accepts connections at `path`.
    static func waitForSocket(_ path: String, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            // Not listening yet: tried again until the deadline.
            if let fd = try? connect(path) {
                close(fd)
                return
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw SandboxError("no API socket at \(path) after \(timeout)")
    }

    /// Sends one request and reads the response (blocking I/O, on the pool for blocking work; a read waits
    /// at most 10 s).
    static func send(_ method: String, _ path: String, body: String, to socket: String) async throws -> Response {
        try await BlockingIO.run { exchange(method, path, body, socket) }.get()
    }

    private static func exchange(_ method: String, _ path: String, _ body: String, _ socket: String)
        -> Result<Response, SandboxError>
    {
        let fd: Int32
        do { fd = try connect(socket) } catch { return .failure(error) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let payload = Array(body.utf8)
        let request =
            Array(
                ("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                    + "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n\r\n").utf8) + payload
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes {
                Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return .failure(SandboxError("API write: \(String(cString: strerror(errno)))")) }
            offset += n
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            if let response = parse(received) { return .success(response) }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            received += chunk[0..<n]
        }
        return parse(received, complete: true).map { .success($0) }
            ?? .failure(SandboxError("no HTTP response from the API"))
    }

    /// The response once its headers and `Content-Length` body have arrived.
    static func parse(_ bytes: [UInt8], complete: Bool = false) -> Response? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<headerEnd.lowerBound]
        let status = head.split(separator: "\r\n").first?.split(separator: " ")
        guard let code = status.flatMap({ $0.count >= 2 ? Int($0[1]) : nil }) else { return nil }
        let length =
            head.split(separator: "\r\n").dropFirst().compactMap { line -> Int? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }.first ?? 0
        let body = text[headerEnd.upperBound...]
        guard body.utf8.count >= length || complete else { return nil }
        return Response(code: code, body: String(body))
    }

    static func connect(_ path: String) throws(SandboxError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SandboxError("socket: \(String(cString: strerror(errno)))") }
        let connected: Int32
        do { connected = try withUnixSocketAddress(path) { Foundation.connect(fd, $0, $1) } } catch {
            // A path too long for a socket address: errno would name some earlier failure.
            close(fd)
            throw SandboxError("connect to \(path): \(error)")
        }
        guard connected == 0 else {
            close(fd)
            throw SandboxError("connect to \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}
