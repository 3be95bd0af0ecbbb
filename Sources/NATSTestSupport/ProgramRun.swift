import Foundation
import NexProcess

extension TestEnvironment {
    /// A program's exit status and output.
    public struct RunResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// The environment a test child gets: this process's, with `changes` applied (nil removes a variable).
    static func childEnvironment(_ changes: [String: String?]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for (key, value) in changes { env[key] = value }
        return env
    }

    /// Runs a program to completion and returns its status and output, whatever the status.
    ///
    /// The wait is awaited, never blocked on: a test that blocks a cooperative thread while the program talks
    /// to something in this process (a node, a service) can starve the whole pool on a 2-core machine. The
    /// child dies with this process, and is killed (whole process group) after `timeout`.
    public static func runAllowingFailure(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:],
        timeout: Duration = .seconds(120)
    ) async throws -> RunResult {
        let child = try await ChildProcess.spawn(
            executable: executable, arguments: arguments, environment: childEnvironment(environment),
            stdout: .pipe, stderr: .pipe)
        async let out = readAll(child.stdout)
        async let err = readAll(child.stderr)
        let (termination, timedOut) = await child.wait(killingAfter: timeout)
        let result = RunResult(
            status: termination.code, stdout: String(decoding: await out, as: UTF8.self),
            stderr: String(decoding: await err, as: UTF8.self))
        if timedOut {
            throw Failure("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout)")
        }
        return result
    }

    /// Runs a program to completion and returns its standard output; throws with its output on failure.
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String?] = [:],
        timeout: Duration = .seconds(120)
    ) async throws -> String {
        let result = try await runAllowingFailure(executable, arguments, environment: environment, timeout: timeout)
        guard result.status == 0 else {
            throw Failure(
                "\(executable) \(arguments.joined(separator: " ")) exited \(result.status):\n\(result.stdout)\n\(result.stderr)"
            )
        }
        return result.stdout
    }
}
