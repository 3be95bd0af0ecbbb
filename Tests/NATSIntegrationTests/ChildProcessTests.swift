import Foundation
import NIOCore
import NexProcess
import Synchronization
import Testing

/// Starting children and reading them: an error names the step that failed, not always the executable; every
/// child's end is seen by the one process thread; pipes and relays run on event loops, not threads of their own.
@Suite struct ChildProcessTests {
    /// Children ending at once, in any order, each get their own status, and no child costs a thread.
    @Test func manyChildrenEndWithTheirOwnStatusAndNoThreadEach() async throws {
        let children = try await withThrowingTaskGroup(of: ChildProcess.self) { group in
            for _ in 0..<24 {
                group.addTask {
                    try await ChildProcess.spawn(executable: "/bin/sleep", arguments: ["30"], environment: [:])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        // All 24 are running: still no thread of their own.
        #expect(ThreadCensus.names().filter { $0.hasPrefix("nex-reaper") }.isEmpty)
        #expect(ThreadCensus.names().contains("nex-children"))
        for child in children { child.signal(SIGKILL) }
        for child in children { #expect(await child.wait() == .signalled(SIGKILL)) }
        let exits = try await withThrowingTaskGroup(of: Int32.self) { group in
            for code in Int32(0)..<16 {
                group.addTask {
                    let child = try await ChildProcess.spawn(
                        executable: "/bin/sh", arguments: ["-c", "exit \(code)"], environment: [:])
                    return await child.wait().code
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(exits.sorted() == Array(0..<16))
    }

    /// Lines split across writes arrive whole, a line longer than the limit that waits for its newline arrives
    /// in pieces, and what follows the last newline arrives at the end.
    @Test func aPipeIsReadLineByLine() async throws {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        let (lines, continuation) = AsyncStream<String>.makeStream()
        LineReader.start(fd: ends[0], maxLine: 64, onLine: { continuation.yield($0) }) { continuation.finish() }
        var iterator = lines.makeAsyncIterator()
        #expect(BlockingIO.writeAll(ends[1], Array("one\ntw".utf8)))
        #expect(await iterator.next() == "one")
        #expect(BlockingIO.writeAll(ends[1], Array("o\n".utf8) + Array(repeating: UInt8(ascii: "0"), count: 100)))
        #expect(await iterator.next() == "two")
        #expect(await iterator.next() == String(repeating: "0", count: 64))
        #expect(BlockingIO.writeAll(ends[1], Array("\nlast".utf8)))
        close(ends[1])
        #expect(await iterator.next() == String(repeating: "0", count: 36))
        #expect(await iterator.next() == "last")
        #expect(await iterator.next() == nil)
    }

    /// A relay copies both ways, and an end that stops writing (a half-close) reaches the other side, whose
    /// answer still comes back.
    @Test func aRelayCopiesBothWaysAndPassesOnTheEnd() async throws {
        let (left, leftInner) = try Self.socketPair()
        let (rightInner, right) = try Self.socketPair()
        try await SocketRelay.relay(leftInner, rightInner).get()
        defer {
            close(left)
            close(right)
        }
        #expect(BlockingIO.writeAll(left, Array("ping\n".utf8)))
        shutdown(left, Int32(SHUT_WR))
        let request = await BlockingIO.run { BlockingIO.readLine(right) }
        #expect(request == "ping")
        let end = await BlockingIO.run { () -> Int in
            var byte: UInt8 = 0
            return read(right, &byte, 1)
        }
        #expect(end == 0)  // the half-close came through
        #expect(BlockingIO.writeAll(right, Array("pong\n".utf8)))
        #expect(await BlockingIO.run { BlockingIO.readLine(left) } == "pong")
    }

    private static func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        // A relay that drops bytes fails the test's reads after 10 s instead of hanging it.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        for fd in fds { setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) }
        return (fds[0], fds[1])
    }

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
