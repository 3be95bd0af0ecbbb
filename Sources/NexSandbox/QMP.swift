import Foundation
import NexProcess

/// A QEMU Machine Protocol connection (`-qmp unix:PATH,server=on,wait=off`): JSON commands and answers,
/// one per line, with asynchronous events in between (skipped). Blocking I/O, each call on a thread of its own.
final class QMPConnection: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Connects (waiting up to `timeout` for the socket), reads the greeting and enters command mode.
    static func connect(path: String, timeout: Duration) async throws -> QMPConnection {
        try await UnixHTTP.waitForSocket(path, timeout: timeout)
        let fd = try UnixHTTP.connect(path)
        var receiveTimeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receiveTimeout, socklen_t(MemoryLayout<timeval>.size))
        let connection = QMPConnection(fd: fd)
        do {
            try await connection.onBlockingPool { _ = try connection.readLine() }  // the greeting
            _ = try await connection.execute("qmp_capabilities")
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Runs `command` (with string `arguments`) and returns its `return` value; a QMP error is thrown with
    /// its description.
    @discardableResult
    func execute<Return: Decodable & Sendable>(
        _ command: String, _ arguments: [String: String]? = nil, returning: Return.Type = Empty.self
    ) async throws -> Return {
        let line = try JSONEncoder().encode(Request(execute: command, arguments: arguments)) + Data("\n".utf8)
        return try await onBlockingPool { () throws -> Return in
            try self.write(Array(line))
            while true {
                let message = try JSONDecoder().decode(Message<Return>.self, from: Data(try self.readLine()))
                if message.event != nil { continue }
                if let error = message.error {
                    throw SandboxError("QEMU \(command): \(error.desc ?? error.class ?? "failed")")
                }
                guard let value = message.return else {
                    throw SandboxError("QEMU \(command): the answer has no return value")
                }
                return value
            }
        }
    }

    /// A command's `return` that carries nothing the caller reads.
    struct Empty: Decodable, Sendable {}

    /// `query-status` and `query-migrate`: the VM's run state, or the migration's (none before one starts).
    struct Status: Decodable, Sendable {
        var status: String?
    }

    private struct Request: Encodable {
        var execute: String
        var arguments: [String: String]?
    }

    /// A line from QEMU: an answer (`return` or `error`) or an event.
    private struct Message<Return: Decodable>: Decodable {
        var event: String?
        var error: Failure?
        var `return`: Return?

        struct Failure: Decodable {
            var `class`: String?
            var desc: String?
        }
    }

    func close() { Foundation.close(fd) }

    private func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw SandboxError("QMP write: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// The next line QEMU writes that is a JSON object (the greeting, an answer or an event).
    private func readLine() throws -> [UInt8] {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0, errno == EINTR { continue }
            guard n == 1 else { throw SandboxError("QMP connection closed") }
            if byte == UInt8(ascii: "\n") {
                if line.first == UInt8(ascii: "{") { return line }
                line.removeAll()
            } else {
                line.append(byte)
            }
        }
    }

    /// Runs blocking socket work on the shared pool for blocking work (QMP answers come within seconds).
    private func onBlockingPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await BlockingIO.run(work)
    }
}
