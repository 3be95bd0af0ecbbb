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
        let prepared = try WasmModuleRewrite.prepare(module, limitBytes: 1 << 20)
        // The memory became a second import (the count is now 2), after env.missing; the rest is kept.
        let imports: [UInt8] =
            [0x02, 0x03] + Array("env".utf8) + [0x07] + Array("missing".utf8) + [0x00, 0x00]
            + Self.nexMemoryImport(1, 16)
        #expect(
            prepared.bytes
                == Array(module[0..<14]) + [0x02, UInt8(imports.count)] + imports
                + [0x03, 0x02, 0x01, 0x00] + Array(module[40...]))
        #expect(prepared.importedMemory == .init(minimumPages: 1, maximumPages: 16))
        do {
            _ = try WasmFunction(bytes: module)
            Issue.record("a module importing env.missing was accepted")
        } catch {
            #expect(error.description.contains("env.missing"), "\(error)")
        }
    }

    /// The import entry `nex.memory` with limits `minimum` and `maximum` pages (both under 128).
    static func nexMemoryImport(_ minimum: UInt8, _ maximum: UInt8) -> [UInt8] {
        [0x03] + Array("nex".utf8) + [0x06] + Array("memory".utf8) + [0x02, 0x01, minimum, maximum]
    }

    @Test func theMemoryCapIsWrittenIntoTheModuleAndOneMemoryBecomesAnImport() throws {
        let header: [UInt8] = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
        let type: [UInt8] = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00]
        func prepare(_ sections: [UInt8]) throws -> WasmModuleRewrite.Prepared {
            try WasmModuleRewrite.prepare(header + sections, limitBytes: 1 << 20)
        }
        func importSection(_ minimum: UInt8, _ maximum: UInt8) -> [UInt8] {
            let entry = Self.nexMemoryImport(minimum, maximum)
            return [0x02, UInt8(entry.count + 1), 0x01] + entry
        }
        // One memory, min 2 and no maximum: imported after the types, capped at 16 pages = 1 MiB.
        let uncapped = try prepare(type + [0x05, 0x03, 0x01, 0x00, 0x02])
        #expect(uncapped.bytes == header + type + importSection(2, 16))
        #expect(uncapped.importedMemory == .init(minimumPages: 2, maximumPages: 16))
        #expect(try prepare([0x05, 0x04, 0x01, 0x01, 0x02, 0x64]).bytes == header + importSection(2, 16))
        #expect(try prepare([0x05, 0x04, 0x01, 0x01, 0x02, 0x03]).bytes == header + importSection(2, 3))  // kept
        // Two memories stay where they are, each capped; no memory, nothing changes.
        let two = try prepare([0x05, 0x05, 0x02, 0x00, 0x02, 0x00, 0x01])
        #expect(two.bytes == header + [0x05, 0x07, 0x02, 0x01, 0x02, 0x10, 0x01, 0x01, 0x10])
        #expect(two.importedMemory == nil)
        #expect(try prepare(type) == .init(bytes: header + type, importedMemory: nil))
        #expect(throws: WasmError.self) { try prepare([0x05, 0x03, 0x01, 0x00, 0x28]) }  // needs 2.5 MiB
        #expect(throws: WasmError.self) { try prepare([0x05, 0x09, 0x01]) }  // truncated section
        #expect(throws: WasmError.self) { try prepare([0x05, 0x04, 0x01, 0x03, 0x01, 0x02]) }  // shared memory
        // A memory from outside (env.memory, min 0 max 1) would escape the cap and the fresh memory per trigger.
        let importsMemory: [UInt8] = [0x02, 0x10, 0x01, 0x03] + Array("env".utf8) + [0x06] + Array("memory".utf8)
        do {
            _ = try prepare(importsMemory + [0x02, 0x01, 0x00, 0x01])
            Issue.record("a module importing its memory was accepted")
        } catch {
            #expect("\(error)".contains("env.memory"), "\(error)")
        }
        #expect(throws: WasmError.self) { try WasmModuleRewrite.prepare(Array("\0asm".utf8), limitBytes: 1 << 20) }
    }

    /// Exit code 65 is a permanent failure; a JetStream trigger's context is in `NEX_TRIGGER_CONTEXT`, and
    /// absent without one.
    @Test func permanentExitsAndTheTriggerContext() throws {
        let f = try WasmFunction(bytes: try Self.module("limits"))
        guard case .failedPermanently(let text) = f.call(subject: "t.bad", payload: []) else {
            Issue.record("expected a permanent failure")
            return
        }
        #expect(text.contains("exited with code 65") && text.contains("can never work"), "\(text)")
        guard case .failed = f.call(subject: "t.fail", payload: []) else {
            Issue.record("exit code 3 is an ordinary failure")
            return
        }
        let context = #"{"stream":"ORDERS","delivered":2}"#
        #expect(f.call(subject: "t.context", payload: [], context: Array(context.utf8)) == .reply(Array(context.utf8)))
        #expect(f.call(subject: "t.context", payload: []) == .reply([]))
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
        // A trap, a grown memory and an error exit leave nothing behind for the next trigger.
        for _ in 0..<2 {
            #expect(f.call(subject: "t.state", payload: []) == .reply(Array("calls=1 memory=clean".utf8)))
        }
    }
}
