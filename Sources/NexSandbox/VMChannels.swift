import Foundation
import NexModels
import NexProcess
import Synchronization

/// The node's ends of one VM's ways out (``VMChannel``). QEMU's user network has no route anywhere
/// (`restrict=on`); each channel address is a `guestfwd` to a character device that QEMU connects, at
/// start, to a Unix socket listened on here. Data waits in that socket until the guest connects, so the
/// node can answer before the guest asks.
///
/// - control: the agent's settings (one JSON line, sent at once) and, on request, its artifact;
/// - link: relayed to the node's end of the agent's link (everything else between node and agent);
/// - service slots: relayed to the servers a service was given (``forward(_:)``).
///
/// A template VM (booted once to be snapshotted) gets the same channels with nothing behind them.
final class VMChannels: Sendable {
    /// What is behind the channels of an agent's VM.
    struct Agent: Sendable {
        var settings: [String: String]
        /// The agent's end of its link (taken by the relay, or closed with the channels).
        var linkEnd: Int32
        /// The host file the control channel serves as the artifact.
        var artifact: String
    }

    /// A private directory for the sockets (short: a socket path must fit in 108 bytes), removed on close.
    let directory: String
    private let acceptors: Mutex<[Acceptor]> = Mutex([])
    /// QEMU's connection for each channel that waits for the node (service slots; everything in a template).
    private let held: [String: HandOff]
    /// The agent's end of its link until the link channel's relay takes it.
    private let linkEnd: HandOff?
    /// Opened by ``releaseSettings()`` once the restored VM runs: data reaching QEMU's network while it still
    /// loads the snapshot can be lost.
    private let settingsGate = DispatchSemaphore(value: 0)

    private static let names = ["control", "link"] + VMChannel.servicePorts.indices.map { "service\($0)" }

    /// Listens on every channel's socket, in a new directory under /tmp.
    init(agent: Agent?) throws {
        var template = Array("/tmp/nex-vm-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            if let agent { Foundation.close(agent.linkEnd) }
            throw SandboxError("cannot make a directory under /tmp: \(String(cString: strerror(errno)))")
        }
        self.directory = String(cString: made)
        var held: [String: HandOff] = [:]
        for name in Self.names where agent == nil || name.hasPrefix("service") { held[name] = HandOff() }
        self.held = held
        let linkEnd = agent.map { HandOff($0.linkEnd) }
        self.linkEnd = linkEnd
        do {
            for name in Self.names {
                let listener = try Acceptor.listenUnix(path: socketPath(name))
                let handle: @Sendable (Int32) -> Void
                if let slot = held[name] {
                    handle = { client in slot.replace(with: client) }
                } else if let agent, name == "control" {
                    let gate = settingsGate
                    handle = { client in
                        Self.serveControl(client, settings: agent.settings, artifact: agent.artifact, after: gate)
                    }
                } else {
                    handle = { client in
                        if let end = linkEnd?.take() {
                            SocketRelay.start(client, end, name: "nex-vm-link")
                        } else {
                            Foundation.close(client)
                        }
                    }
                }
                let acceptor = Acceptor(listener: listener, name: "nex-vm-\(name)", handle: handle)
                acceptors.withLock { $0.append(acceptor) }
            }
        } catch {
            close()
            throw error
        }
    }

    func socketPath(_ name: String) -> String { directory + "/\(name).sock" }

    /// The VM's network for QEMU's `-netdev`: user networking with no route out (`restrict=on`), and one
    /// `guestfwd` per channel to its character device (``chardevArguments``).
    var netdev: String {
        let ports = [VMChannel.controlPort, VMChannel.linkPort] + VMChannel.servicePorts
        let forwards = zip(Self.names, ports).map { name, port in
            "guestfwd=tcp:\(VMChannel.host):\(port)-chardev:\(name)"
        }
        return (["user", "id=n0", "restrict=on"] + forwards).joined(separator: ",")
    }

    /// The character devices, each a Unix socket QEMU connects to at start.
    var chardevArguments: [String] {
        Self.names.flatMap { ["-chardev", "socket,id=\($0),path=\(socketPath($0))"] }
    }

    /// Relays service slot `i`'s guest connection to each of `targets`, in order; returns the addresses the
    /// workload must dial. A slot carries one connection: a service that reconnects cannot get another.
    func forward(_ targets: [NetworkEndpoint]) async throws -> [NetworkEndpoint] {
        guard targets.count <= VMChannel.servicePorts.count else {
            throw SandboxError("a VM sandbox forwards at most \(VMChannel.servicePorts.count) servers")
        }
        var inside: [NetworkEndpoint] = []
        for (index, target) in targets.enumerated() {
            guard let slot = held["service\(index)"] else { continue }
            // QEMU connected the slot when it started; give the acceptor's thread a moment if need be.
            var client: Int32?
            for _ in 0..<200 {
                client = slot.take()
                if client != nil { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            guard let client else { throw SandboxError("the VM's channel for \(target) is not connected") }
            let upstream: Int32
            do { upstream = try SocketRelay.connectTCP(host: target.host, port: target.port) } catch {
                Foundation.close(client)
                throw SandboxError("cannot reach \(target) for the workload: \(error)")
            }
            SocketRelay.start(client, upstream, name: "nex-vm-service")
            inside.append(NetworkEndpoint(host: VMChannel.host, port: VMChannel.servicePorts[index]))
        }
        return inside
    }

    /// Lets the control channel send the agent's settings.
    func releaseSettings() { settingsGate.signal() }

    /// Stops listening and closes what is still held (relays already started live on until their ends close).
    func close() {
        for acceptor in acceptors.withLock({ $0 }) { acceptor.close() }
        for slot in held.values { if let fd = slot.take() { Foundation.close(fd) } }
        if let end = linkEnd?.take() { Foundation.close(end) }
        try? FileManager.default.removeItem(atPath: directory)  // leaves at most a few socket files in /tmp
    }

    /// Sends the settings, then answers requests for the file `artifact` until the VM goes away (also the
    /// firecracker driver's control channel, over vsock).
    static func serveControl(
        _ client: Int32, settings: [String: String], artifact: String, after gate: DispatchSemaphore? = nil
    ) {
        startThread(named: "nex-vm-control") {
            defer { Foundation.close(client) }
            if let gate, gate.wait(timeout: .now() + 120) == .timedOut { return }
            // A [String: String] always encodes; a broken channel ends the thread.
            guard let line = try? JSONEncoder().encode(settings),
                BlockingIO.writeAll(client, Array(line) + [UInt8(ascii: "\n")])
            else { return }
            while let request = BlockingIO.readLine(client) {
                if request + "\n" == VMChannel.artifactRequest {
                    guard sendFile(artifact, to: client) else { return }
                } else {
                    guard BlockingIO.writeAll(client, Array("ERR unknown request\n".utf8)) else { return }
                }
            }
        }
    }

    /// `OK <size>\n` and the file's bytes, or `ERR <reason>\n`; false when the channel broke.
    private static func sendFile(_ path: String, to client: Int32) -> Bool {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        var status = stat()
        guard file >= 0, fstat(file, &status) == 0 else {
            if file >= 0 { Foundation.close(file) }
            return BlockingIO.writeAll(client, Array("ERR no artifact for this agent\n".utf8))
        }
        defer { Foundation.close(file) }
        guard BlockingIO.writeAll(client, Array("OK \(status.st_size)\n".utf8)) else { return false }
        var remaining = Int(status.st_size)
        while remaining > 0 {
            let n = sendfile(client, file, nil, remaining)
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            remaining -= n
        }
        return true
    }
}
