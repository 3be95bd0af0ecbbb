import Foundation
import NexProcess
import WASI
@_spi(Fuzzing) import WasmKit  // Store.resourceLimiter (the memory cap) is SPI in WasmKit 0.4.2
import WasmKitWASI

/// A WebAssembly function: a WASI preview1 command module parsed once and instantiated per call, with the
/// trigger subject as argv[1], the payload on stdin and all of stdout as the reply. A fuel budget bounds CPU
/// and a resource limiter bounds memory. Calls block: run them on a thread of their own.
public final class WasmFunction: @unchecked Sendable {
    /// Per-function limits.
    public struct Limits: Sendable {
        /// Roughly one unit per executed operator (default 2 billion: seconds of work, not forever).
        public var fuel: UInt64 = 2_000_000_000
        /// Linear memory (default 64 MiB).
        public var memoryBytes = 64 << 20
        /// Largest reply (default 8 MiB).
        public var maxReplyBytes = 8 << 20
        public init() {}
    }

    /// What a call produced.
    public enum Outcome: Sendable, Equatable {
        case reply([UInt8])
        /// A non-zero exit (code and stderr), a trap, or a limit.
        case failed(String)
    }

    let module: Module
    let engine: Engine
    let limits: Limits
    let environment: [String: String]
    let name: String
    let stderrLine: @Sendable (String) -> Void
    let imports: HostImports?

    /// Parses `bytes`; throws with the parser's message.
    public init(
        bytes: [UInt8], name: String = "function", environment: [String: String] = [:], limits: Limits = Limits(),
        hostImports: HostImports? = nil, stderr: @escaping @Sendable (String) -> Void = { _ in }
    ) throws {
        do { module = try parseWasm(bytes: bytes) } catch {
            throw WasmError("not a WebAssembly module: \(error)")
        }
        engine = Engine(configuration: EngineConfiguration(fuelMetering: true))
        self.limits = limits
        self.environment = environment
        self.name = name
        self.stderrLine = stderr
        self.imports = hostImports
    }

    /// Runs the module once for `subject` with `payload` on stdin.
    public func call(subject: String, payload: [UInt8]) -> Outcome {
        do {
            let stdin = try MemoryFile(name: "stdin", contents: payload)
            let stdout = try MemoryFile(name: "stdout")
            let stderr = try MemoryFile(name: "stderr")
            let wasi = try WASIBridgeToHost(
                args: [name, subject], environment: environment, stdin: stdin.fd, stdout: stdout.fd,
                stderr: stderr.fd)
            let run: Result<UInt32, any Error> = try wasi.runAndClose { wasi in
                let store = Store(engine: engine)
                store.resourceLimiter = MemoryCap(bytes: limits.memoryBytes)
                store.fuel = Fuel(remaining: limits.fuel)
                var imports = Imports()
                wasi.link(to: &imports, store: store)
                self.imports?.link(to: &imports, store: store)
                return Result { try wasi.start(try module.instantiate(store: store, imports: imports)) }
            }
            let code: UInt32
            switch run {
            case .success(let c): code = c
            case .failure(let error):
                forwardStderr(stderr)
                return .failed(Self.describe(error, limits: limits))
            }
            forwardStderr(stderr)
            guard code == 0 else {
                let text = stderr.contents(limit: 4096).map { String(decoding: $0, as: UTF8.self) } ?? ""
                return .failed("exited with code \(code)\(text.isEmpty ? "" : ": " + text)")
            }
            guard let reply = stdout.contents(limit: limits.maxReplyBytes) else {
                return .failed("the reply is larger than \(limits.maxReplyBytes) bytes")
            }
            return .reply(reply)
        } catch {
            return .failed("\(error)")
        }
    }

    private func forwardStderr(_ file: MemoryFile) {
        guard let bytes = file.contents(limit: 1 << 20), !bytes.isEmpty else { return }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") { stderrLine(String(line)) }
    }

    static func describe(_ error: any Error, limits: Limits) -> String {
        let text = "\(error)"
        if text.lowercased().contains("fuel") { return "the function exceeded its CPU limit (\(limits.fuel) fuel)" }
        return "trapped: \(text)"
    }
}

/// Denies linear memory beyond a cap.
final class MemoryCap: ResourceLimiter {
    let bytes: Int
    init(bytes: Int) { self.bytes = bytes }
    func limitMemoryGrowth(to desired: Int) throws -> Bool { desired <= bytes }
    func limitTableGrowth(to desired: Int) throws -> Bool { desired <= 100_000 }
}

/// A module that is not WebAssembly or cannot run.
public struct WasmError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Host functions a WebAssembly function may import (the `nex` module); see ``NexHostImports``.
public protocol HostImports: Sendable {
    func link(to imports: inout Imports, store: Store)
}
