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
            try await connection.onThread { _ = try connection.readObject() }  // the greeting
            _ = try await connection.execute("qmp_capabilities")
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Runs `command` (with string `arguments`) and returns its `return` value as JSON; a QMP error is thrown
    /// with its description.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: String]? = nil) async throws -> Data {
        var request: [String: Any] = ["execute": command]
        if let arguments { request["arguments"] = arguments }
        let line = try JSONSerialization.data(withJSONObject: request) + Data("\n".utf8)
        return try await onThread { () throws -> Data in
            try self.write(Array(line))
            while true {
                let object = try self.readObject()
                if object["event"] != nil { continue }
                if let error = object["error"] as? [String: Any] {
                    throw SandboxError("QEMU \(command): \(error["desc"] as? String ?? "\(error)")")
                }
                return try JSONSerialization.data(
                    withJSONObject: object["return"] ?? [String: Any](), options: [.fragmentsAllowed])
            }
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

    private func readObject() throws -> [String: Any] {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0, errno == EINTR { continue }
            guard n == 1 else { throw SandboxError("QMP connection closed") }
            if byte == UInt8(ascii: "\n") {
                if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] { return object }
                line.removeAll()
            } else {
                line.append(byte)
            }
        }
    }

    private func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let result: Result<T, any Error> = await withCheckedContinuation { continuation in
            startThread(named: "nex-qmp") { continuation.resume(returning: Result { try work() }) }
        }
        return try result.get()
    }
}
