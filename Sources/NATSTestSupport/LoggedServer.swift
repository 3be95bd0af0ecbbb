import Foundation
import NexProcess
import Synchronization

/// A server program a test starts on port 0, which logs the address it took: its process, that address, and
/// everything it has written (stdout and stderr), kept for assertions and failure messages.
public final class LoggedServer: Sendable {
    public let process: ChildProcess
    /// What the server logged as its address (`HOST:PORT`, as `address(in:)` cut it out).
    public let address: String
    private let output: Output

    /// The lines written, shared with the readers that append them.
    private final class Output: Sendable {
        let lines = Mutex<[String]>([])
    }

    private init(process: ChildProcess, address: String, output: Output) {
        self.process = process
        self.address = address
        self.output = output
    }

    /// Every line written so far.
    public var lines: [String] { output.lines.withLock { $0 } }

    /// Starts `executable` and waits (up to `timeout`) for a line from which `address` cuts out the address.
    public static func start(
        _ executable: String, _ arguments: [String], directory: String, name: String,
        timeout: Duration = .seconds(30), address: @escaping @Sendable (String) -> String?
    ) async throws -> LoggedServer {
        let process = try await ChildProcess.spawn(
            executable: executable, arguments: arguments, environment: TestEnvironment.childEnvironment([:]),
            directory: directory, stdout: .pipe, stderr: .pipe)
        let found = AsyncStream<String>.makeStream()
        let output = Output()
        let open = Mutex(2)
        for fd in [process.stdout, process.stderr].compactMap({ $0 }) {
            LineReader.start(
                fd: fd,
                onLine: { line in
                    output.lines.withLock { $0.append(line) }
                    if let cut = address(line) { found.continuation.yield(cut) }
                },
                onEnd: {
                    let left = open.withLock { count in
                        count -= 1
                        return count
                    }
                    if left == 0 { found.continuation.finish() }
                })
        }
        let cut = await withTaskGroup(of: String?.self) { group in
            group.addTask { await found.stream.first { _ in true } }
            group.addTask {
                // Cancelled once the address came: the nil returned then is not used.
                try? await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
        guard let cut else {
            _ = await process.terminate(grace: .seconds(2))
            let log = output.lines.withLock { $0.suffix(40).joined(separator: "\n") }
            throw TestEnvironment.Failure("\(name) did not start listening:\n\(log)")
        }
        return LoggedServer(process: process, address: cut, output: output)
    }

    /// Ends the server (SIGTERM, then SIGKILL after `grace`).
    public func stop(grace: Duration = .seconds(5)) async {
        _ = await process.terminate(grace: grace)
    }
}
