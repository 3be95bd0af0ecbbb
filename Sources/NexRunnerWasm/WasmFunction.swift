import Foundation
import NexRunnerJS

/// A WebAssembly function: a WASI preview1 command module compiled once by V8 and instantiated afresh for
/// every call, with the trigger subject as argv[1], the payload on stdin and all of stdout as the reply.
///
/// The module runs in an isolate of its own, under the same limits as a JavaScript function: CPU time per
/// call, and linear memory capped by rewriting the module's declared maximum (see ``WasmModuleRewrite``, which
/// also lets instances reuse one zeroed memory instead of mapping a new one). WASI itself is implemented in
/// JavaScript inside that isolate (Resources/wasi.js). Calls block and must come from one thread at a time.
public final class WasmFunction: @unchecked Sendable {
    /// Per-function limits.
    public struct Limits: Sendable {
        /// CPU time of one call (default 5 s).
        public var cpuMillis: UInt64 = 5_000
        /// Linear memory (default 64 MiB); the engine's own heap gets the same again.
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
        /// An exit with code 65 (EX_DATAERR): the module says retrying cannot help.
        case failedPermanently(String)
    }

    /// Handles `nex.host_call`: service, method and a JSON array of arguments in, JSON result out; throw to
    /// make the guest see an error.
    public typealias HostCall = JSFunction.HostCall

    private let engine: JSFunction

    /// What the JavaScript runtime of a module is started with.
    private struct RuntimeSettings: Encodable {
        var name: String
        var environment: [String: String]
        var maxReplyBytes: Int
        var maxLogBytes: Int
        /// The memory the module imports, in pages (nil: it exports its own).
        var memory: Memory?

        struct Memory: Encodable {
            var initial: UInt32
            var maximum: UInt32
        }
    }

    /// Compiles `bytes`; throws ``WasmError`` when the module is not WebAssembly, imports what Nex does not
    /// provide, is not a WASI command, or needs more memory than the limit.
    public init(
        bytes: [UInt8], name: String = "function", environment: [String: String] = [:], limits: Limits = Limits(),
        hostCall: HostCall? = nil, stderr: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(WasmError) {
        let module = try WasmModuleRewrite.prepare(bytes, limitBytes: limits.memoryBytes)
        let settings = RuntimeSettings(
            name: name, environment: environment, maxReplyBytes: limits.maxReplyBytes, maxLogBytes: 1 << 20,
            memory: module.importedMemory.map { .init(initial: $0.minimumPages, maximum: $0.maximumPages) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let settingsJSON: Data
        do { settingsJSON = try encoder.encode(settings) } catch {
            throw WasmError("the function's settings cannot be encoded: \(error)")
        }
        let source = "(\(Self.runtime))(\(String(decoding: settingsJSON, as: UTF8.self)))"
        var engineLimits = JSFunction.Limits()
        engineLimits.cpuMillis = limits.cpuMillis
        engineLimits.heapBytes = max(limits.memoryBytes, 32 << 20)
        // The module's bytes are an ArrayBuffer until compiled; replies and stdin copies are small.
        engineLimits.arrayBufferBytes = max(bytes.count * 2, 16 << 20) + limits.maxReplyBytes * 2
        do {
            engine = try JSFunction(source: source, data: module.bytes, limits: engineLimits, host: hostCall) {
                _, line in
                stderr(line)
            }
        } catch let error as JSError {
            throw WasmError(error.description)
        } catch {
            throw WasmError("\(error)")
        }
    }

    /// Runs the module once for `subject` with `payload` on stdin, and `context` (a JetStream trigger's, as
    /// JSON) in the environment variable `NEX_TRIGGER_CONTEXT`.
    public func call(subject: String, payload: [UInt8], context: [UInt8]? = nil) -> Outcome {
        switch engine.call(subject: subject, payload: payload, context: context) {
        case .reply(let bytes): .reply(bytes)
        case .threw(let message), .limitExceeded(let message): .failed(message)
        case .threwPermanently(let message): .failedPermanently(message)
        }
    }

    /// The WASI runtime, compiled into the binary.
    static let runtime = String(decoding: PackageResources.wasi_js, as: UTF8.self)
}

/// A module that is not WebAssembly or cannot run.
public struct WasmError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
