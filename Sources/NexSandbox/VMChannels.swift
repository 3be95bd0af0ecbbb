import Foundation
import NIOCore
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
    private let held: [String: HeldChannel]
    /// The agent's end of its link until the link channel's relay takes it.
    private let linkEnd: HandOff?
    /// Opened by ``releaseSettings()`` once the restored VM runs: data reaching QEMU's network while it still
    /// loads the snapshot can be lost.
    private let settingsGate = Gate()
    /// The control channel's sessions (one per connection QEMU makes), ended by ``close()``.
    private let sessions = ControlSessions()

    private static let names = ["control", "link"] + VMChannel.servicePorts.indices.map { "service\($0)" }

    /// Listens on every channel's socket, in a new directory under /tmp.
    init(agent: Agent?) async throws {
        var template = Array("/tmp/nex-vm-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            if let agent { Foundation.close(agent.linkEnd) }
            throw SandboxError("cannot make a directory under /tmp: \(String(cString: strerror(errno)))")
        }
        self.directory = String(cString: made)
        var held: [String: HeldChannel] = [:]
        for name in Self.names where agent == nil || name.hasPrefix("service") { held[name] = HeldChannel() }
        self.held = held
        let linkEnd = agent.map { HandOff($0.linkEnd) }
        self.linkEnd = linkEnd
        do {
            for name in Self.names {
                let listener = try Acceptor.listenUnix(path: socketPath(name))
                let handle: @Sendable (any Channel) -> Void
                if let slot = held[name] {
                    handle = { client in slot.replace(with: client) }
                } else if let agent, name == "control" {
                    let (gate, sessions) = (settingsGate, self.sessions)
                    handle = { client in
                        sessions.serve(client, settings: agent.settings, artifact: agent.artifact, after: gate)
                    }
                } else {
                    handle = { client in
                        if let end = linkEnd?.take() {
                            _ = SocketRelay.relay(client, toDescriptor: end)  // a failure closes both ends
                        } else {
                            client.close(promise: nil)
                        }
                    }
                }
                let acceptor = try await Acceptor.start(listener: listener, handle: handle)
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
            // QEMU connects the slot as it starts; wait for the acceptor if need be.
            guard let client = await slot.take(waitingUpTo: .seconds(2)) else {
                throw SandboxError("the VM's channel for \(target) is not connected")
            }
            do { try await SocketRelay.relay(client, toHost: target.host, port: target.port).get() } catch {
                throw SandboxError("cannot reach \(target) for the workload: \(error)")
            }
            inside.append(NetworkEndpoint(host: VMChannel.host, port: VMChannel.servicePorts[index]))
        }
        return inside
    }

    /// Lets the control channel send the agent's settings.
    func releaseSettings() { settingsGate.open() }

    /// Stops listening, ends the control sessions and closes what is still held (relays already started live
    /// on until their ends close).
    func close() {
        for acceptor in acceptors.withLock({ $0 }) { acceptor.close() }
        sessions.endAll()
        settingsGate.open()  // a session still waiting for it is cancelled: it sends nothing
        for slot in held.values { slot.close() }
        if let end = linkEnd?.take() { Foundation.close(end) }
        try? FileManager.default.removeItem(atPath: directory)  // leaves at most a few socket files in /tmp
    }
}
