import Foundation
import NATSTestSupport
import Synchronization
import Testing

@testable import NexRunnerWasm

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
        // The right header with a broken body: V8's own message comes through.
        let truncated: [UInt8] = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01]
        #expect(throws: WasmError.self) { try WasmFunction(bytes: truncated) }
    }

    @Test func everyTriggerGetsAFreshInstance() throws {
        let f = try WasmFunction(bytes: try Self.module("limits"))
        for _ in 0..<3 {
            #expect(f.call(subject: "t.state", payload: []) == .reply(Array("calls=1 memory=clean".utf8)))
        }
    }

    @Test func aModuleImportingWhatNexDoesNotProvideIsRefusedAtDeploy() throws {
        // (module (import "env" "missing" (func)) (memory (export "memory") 1) (func (export "_start")))
        let module: [UInt8] =
            [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
            + [0x01, 0x04, 0x01, 0x60, 0x00, 0x00]  // type: () -> ()
            + [0x02, 0x0F, 0x01, 0x03, 0x65, 0x6E, 0x76, 0x07] + Array("missing".utf8) + [0x00, 0x00]
            + [0x03, 0x02, 0x01, 0x00]  // one function of type 0
            + [0x05, 0x03, 0x01, 0x00, 0x01]  // memory: min 1
            + [0x07, 0x13, 0x02, 0x06] + Array("memory".utf8) + [0x02, 0x00, 0x06] + Array("_start".utf8) + [
                0x00, 0x01,
            ]
            + [0x0A, 0x04, 0x01, 0x02, 0x00, 0x0B]  // code: an empty body
        #expect(throws: Never.self) { try WasmMemoryCap.apply(to: module, limitBytes: 1 << 20) }
        do {
            _ = try WasmFunction(bytes: module)
            Issue.record("a module importing env.missing was accepted")
        } catch {
            #expect(error.description.contains("env.missing"), "\(error)")
        }
    }

    @Test func theMemoryCapIsWrittenIntoTheModule() throws {
        // A memory section declaring min 2, no maximum; then min 2, max 100; then min 40 (too big).
        let header: [UInt8] = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
        let uncapped = try WasmMemoryCap.apply(to: header + [0x05, 0x03, 0x01, 0x00, 0x02], limitBytes: 1 << 20)
        #expect(uncapped == header + [0x05, 0x04, 0x01, 0x01, 0x02, 0x10])  // max 16 pages = 1 MiB
        let bounded = try WasmMemoryCap.apply(to: header + [0x05, 0x04, 0x01, 0x01, 0x02, 0x64], limitBytes: 1 << 20)
        #expect(bounded == header + [0x05, 0x04, 0x01, 0x01, 0x02, 0x10])
        let small = try WasmMemoryCap.apply(to: header + [0x05, 0x04, 0x01, 0x01, 0x02, 0x03], limitBytes: 1 << 20)
        #expect(small == header + [0x05, 0x04, 0x01, 0x01, 0x02, 0x03])  // a lower maximum is kept
        #expect(throws: WasmError.self) {
            try WasmMemoryCap.apply(to: header + [0x05, 0x03, 0x01, 0x00, 0x28], limitBytes: 1 << 20)
        }
        #expect(throws: WasmError.self) {  // truncated section
            try WasmMemoryCap.apply(to: header + [0x05, 0x09, 0x01], limitBytes: 1 << 20)
        }
        #expect(throws: WasmError.self) {  // a shared memory
            try WasmMemoryCap.apply(to: header + [0x05, 0x04, 0x01, 0x03, 0x01, 0x02], limitBytes: 1 << 20)
        }
    }

    @Test func limitsAndFailuresAreAnswersNotCrashes() throws {
        var limits = WasmFunction.Limits()
        limits.cpuMillis = 300
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
