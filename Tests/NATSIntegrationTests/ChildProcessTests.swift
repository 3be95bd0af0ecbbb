import Foundation
import NexProcess
import Testing

/// Starting children: an error names the step that failed, not always the executable.
@Suite struct ChildProcessTests {
    /// A work directory that is gone used to be reported as a missing executable ("cannot start …/nex-agent:
    /// No such file or directory" for an agent that existed).
    @Test func aMissingWorkDirectoryIsNamedAsSuch() async throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("gone-\(UUID().uuidString)").path
        let error = await #expect(throws: SpawnError.self) {
            _ = try await ChildProcess.spawn(executable: "/bin/true", environment: [:], directory: missing)
        }
        #expect(error?.step == .changeDirectory(missing))
        #expect(
            error?.description
                == "cannot start /bin/true: cannot enter its work directory \(missing): No such file or directory")
    }

    @Test func aMissingExecutableIsNamedAsSuch() async throws {
        let error = await #expect(throws: SpawnError.self) {
            _ = try await ChildProcess.spawn(executable: "/nonexistent/program", environment: [:])
        }
        #expect(
            error?.step == .exec && error?.description == "cannot start /nonexistent/program: No such file or directory"
        )
    }
}
