import Foundation
import NATSTestSupport
import NexRunnerWasm
import Synchronization
import Testing

@Suite struct WasmFunctionTests {
    static func module(_ name: String) throws -> [UInt8] {
        let path = TestEnvironment.packageRoot.appendingPathComponent("examples/wasm/\(name).wasm").path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TestEnvironment.Failure("missing \(path)")
        }
        return Array(data)
    }

    static var echo: [UInt8] { get throws { try module("echofunction") } }

    @Test func stdinAndTheRealSubjectMakeTheReply() throws {
        let f = try WasmFunction(bytes: try Self.echo)
        #expect(f.call(subject: "wasm.echo", payload: Array("hello".utf8)) == .reply(Array("hellowasm.echo".utf8)))
        // Instantiated per call: a second call starts clean, and a big payload comes back whole.
        let big = [UInt8](repeating: 65, count: 300_000)
        #expect(f.call(subject: "s", payload: big) == .reply(big + Array("s".utf8)))
    }

    @Test func garbageIsRefused() {
        #expect(throws: WasmError.self) { try WasmFunction(bytes: Array("not wasm".utf8)) }
    }

    @Test func limitsAndFailuresAreAnswersNotCrashes() throws {
        var limits = WasmFunction.Limits()
        limits.fuel = 5_000_000  // debug builds run WebAssembly slowly: keep the spin short
        limits.memoryBytes = 8 << 20
        let lines = Mutex<[String]>([])
        let f = try WasmFunction(
            bytes: try Self.module("limits"), limits: limits, stderr: { line in lines.withLock { $0.append(line) } })
        #expect(f.call(subject: "t.ok", payload: []) == .reply(Array("ok".utf8)))
        let start = ContinuousClock.now
        guard case .failed(let loop) = f.call(subject: "t.loop", payload: []) else {
            Issue.record("expected the CPU limit")
            return
        }
        #expect(loop.contains("CPU limit") && ContinuousClock.now - start < .seconds(30), "\(loop)")
        let growOutcome = f.call(subject: "t.grow", payload: [])
        guard case .failed(let grow) = growOutcome else {
            Issue.record("expected the memory cap, got \(growOutcome)")
            return
        }
        #expect(grow.contains("exited with code 2") && grow.contains("out of memory"), "\(grow)")
        guard case .failed(let fail) = f.call(subject: "t.fail", payload: []) else {
            Issue.record("expected a failure")
            return
        }
        #expect(fail.contains("exited with code 3"))
        #expect(lines.withLock { $0 }.contains("failing on purpose"))
        #expect(f.call(subject: "t.ok", payload: []) == .reply(Array("ok".utf8)))  // still usable
    }
}
