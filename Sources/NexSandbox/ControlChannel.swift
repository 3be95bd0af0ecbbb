import Foundation
import NIOCore
import NIOFileSystem
import NexModels
import Synchronization

/// The control channel of a VM's agent (QEMU's channel, or Firecracker's vsock): the node sends the agent's
/// settings as one JSON line, then answers each request for the artifact with `OK <size>\n` and the file's
/// bytes, or `ERR <reason>\n`. One session per connection, each a task these sessions own.
final class ControlSessions: Sendable {
    private struct State {
        var ended = false
        var running: [Int: Task<Void, Never>] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    /// Serves `channel` (a new connection that does not read yet) until it closes or ``endAll()``: the
    /// settings once `gate` opens, then the file `artifact` on request.
    func serve(_ channel: any Channel, settings: [String: String], artifact: String, after gate: Gate? = nil) {
        state.withLock { s in
            guard !s.ended else { return channel.close(promise: nil) }
            let id = s.nextID
            s.nextID += 1
            s.running[id] = Task {
                await Self.session(channel, settings: settings, artifact: artifact, after: gate)
                _ = self.state.withLock { $0.running.removeValue(forKey: id) }
            }
        }
    }

    /// Ends every session and refuses new ones (the VM is going away): each is cancelled, and ends at its next
    /// wait, closing its connection (a file being sent is closed with it).
    func endAll() {
        let running = state.withLock { s in
            s.ended = true
            return Array(s.running.values)
        }
        for task in running { task.cancel() }
    }

    private static func session(
        _ channel: any Channel, settings: [String: String], artifact: String, after gate: Gate?
    ) async {
        do {
            let session = try await channel.eventLoop.submit {
                let wrapped = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) }
                return wrapped
            }.get()
            try await session.executeThenClose { inbound, outbound in
                if let gate { await gate.wait() }
                try Task.checkCancellation()
                try await outbound.write(ByteBuffer(bytes: try JSONEncoder().encode(settings) + [UInt8(ascii: "\n")]))
                var pending = ByteBuffer()
                for try await var chunk in inbound {
                    pending.writeBuffer(&chunk)
                    while let request = pending.readLine() {
                        if request + "\n" == VMChannel.artifactRequest {
                            try await sendFile(artifact, to: outbound)
                        } else {
                            try await outbound.write(ByteBuffer(string: "ERR unknown request\n"))
                        }
                    }
                    guard pending.readableBytes <= 1024 else { return }  // no request is that long
                }
            }
        } catch {
            // The connection broke or closed (the VM went away), or the session was ended: no one to answer.
        }
    }

    /// `OK <size>\n` and the file's bytes (read with NIO's file system, in chunks the channel takes as it
    /// can), or `ERR <reason>\n` when the file cannot be read.
    private static func sendFile(_ path: String, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        var headerSent = false
        do {
            // The handle is closed however the closure ends, a cancelled session included.
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { file in
                let size = try await file.info().size
                try await outbound.write(ByteBuffer(string: "OK \(size)\n"))
                headerSent = true
                for try await chunk in file.readChunks(in: 0..<size) { try await outbound.write(chunk) }
            }
        } catch {
            guard !headerSent else { throw error }  // mid-file: the agent sees the short read
            let reason = "\(error)".replacingOccurrences(of: "\n", with: " ")
            try await outbound.write(ByteBuffer(string: "ERR cannot read the workload's artifact: \(reason)\n"))
        }
    }
}

extension ByteBuffer {
    /// Reads one line, without its newline, when a whole one is buffered.
    fileprivate mutating func readLine() -> String? {
        guard let newline = readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        let line = readString(length: newline - readerIndex)
        moveReaderIndex(forwardBy: 1)
        return line
    }
}

/// A gate that tasks wait at until it opens, once.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    /// Returns once the gate is open.
    func wait() async {
        await withCheckedContinuation { continuation in
            let isOpen = state.withLock { s in
                if !s.open { s.waiters.append(continuation) }
                return s.open
            }
            if isOpen { continuation.resume() }
        }
    }

    /// Opens the gate for every waiter, now and later.
    func open() {
        let waiters = state.withLock { s in
            s.open = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// A connection held for a relay until taken; one that arrives while another is held replaces (closes) it.
/// Once closed, it closes what still arrives (an acceptor may hand over a connection it took as it closed).
final class HeldChannel: Sendable {
    private let state = Mutex<(held: (any Channel)?, closed: Bool)>((nil, false))

    func replace(with new: any Channel) {
        let old: (any Channel)? = state.withLock { s in
            guard !s.closed else { return new }
            defer { s.held = new }
            return s.held
        }
        old?.close(promise: nil)
    }

    func take() -> (any Channel)? {
        state.withLock { s in
            defer { s.held = nil }
            return s.held
        }
    }

    /// Closes the held connection, and every one that arrives later.
    func close() {
        let held = state.withLock { s in
            s.closed = true
            defer { s.held = nil }
            return s.held
        }
        held?.close(promise: nil)
    }

    /// Takes the connection, waiting for it up to `timeout` (QEMU connects as it starts).
    func take(waitingUpTo timeout: Duration) async -> (any Channel)? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let taken = take() { return taken }
            guard ContinuousClock.now < deadline else { return nil }
            do { try await Task.sleep(for: .milliseconds(10)) } catch { return nil }
        }
    }
}
