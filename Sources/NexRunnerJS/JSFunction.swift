import CV8
import Foundation

/// A JavaScript function compiled in its own V8 isolate, with limits. Calls are blocking and must come from
/// one thread at a time: ``JSRunner`` gives each function a thread of its own.
public final class JSFunction: @unchecked Sendable {
    /// Per-function limits.
    public struct Limits: Sendable {
        /// V8 heap (default 64 MiB).
        public var heapBytes = 64 << 20
        /// ArrayBuffer memory (default 64 MiB).
        public var arrayBufferBytes = 64 << 20
        /// CPU time of one call (default 5 s).
        public var cpuMillis: UInt64 = 5_000
        public init() {}
    }

    /// What a call produced.
    public enum Outcome: Sendable, Equatable {
        /// Reply bytes (a Uint8Array/ArrayBuffer as is, a string as UTF-8, anything else as JSON; empty for
        /// undefined or null).
        case reply([UInt8])
        /// The function threw: message and stack.
        case threw(String)
        /// The function threw an error with `permanent: true`: retrying it cannot help (message and stack).
        case threwPermanently(String)
        /// Terminated at a limit (CPU or heap); the engine stays usable.
        case limitExceeded(String)
    }

    /// Handles `this.hostServices.<service>.<method>(…)`: JSON array of arguments in, JSON result out
    /// (`Uint8Array`s travel as `{"$bytes":[…]}`); throw to make the JavaScript call throw.
    public typealias HostCall =
        @Sendable (_ service: String, _ method: String, _ argumentsJSON: String) throws -> String
    /// `console.log` (0) / `console.error` (8).
    public typealias Log = @Sendable (_ level: Int, _ text: String) -> Void

    private let handle: OpaquePointer
    private let callbacks: Unmanaged<Callbacks>

    final class Callbacks {
        let host: HostCall?
        let log: Log?
        init(host: HostCall?, log: Log?) {
            self.host = host
            self.log = log
        }
    }

    /// Compiles `source` (a script whose value is a function); throws ``JSError`` with V8's message. `name` is
    /// the file its stacks and errors name (the user's file: `echofunction.js`). `data`, when
    /// given, is the ArrayBuffer `__nexData` while the script runs (a runtime written in JavaScript, such as the
    /// WebAssembly runner's, takes its module from there).
    public init(
        source: String, name: String = "function.js", data: [UInt8] = [], limits: Limits = Limits(),
        host: HostCall? = nil, log: Log? = nil
    ) throws {
        let callbacks = Unmanaged.passRetained(Callbacks(host: host, log: log))
        var error: UnsafeMutablePointer<CChar>?
        let cLimits = nex_js_limits(
            heap_bytes: limits.heapBytes, array_buffer_bytes: limits.arrayBufferBytes, cpu_millis: limits.cpuMillis)
        var source = source
        let handle = source.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { text in
                data.withUnsafeBufferPointer { data in
                    nex_js_compile(
                        text.baseAddress, text.count, name, data.baseAddress, data.count, cLimits,
                        callbacks.toOpaque(), jsHostTrampoline, jsLogTrampoline, &error)
                }
            }
        }
        guard let handle else {
            callbacks.release()
            defer { free(error) }
            throw JSError(error.map { String(cString: $0) } ?? "cannot compile the function")
        }
        self.handle = handle
        self.callbacks = callbacks
    }

    deinit {
        nex_js_destroy(handle)
        callbacks.release()
    }

    /// Calls the function with `(subject, payload)`, and `ctx` as the third argument when `context` (JSON of an
    /// object) is given. Blocks until it returns or hits a limit.
    public func call(subject: String, payload: [UInt8], context: [UInt8]? = nil) -> Outcome {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        let kind = payload.withUnsafeBufferPointer { payload in
            (context ?? []).withUnsafeBufferPointer { context in
                context.withMemoryRebound(to: CChar.self) { context in
                    nex_js_call(
                        handle, subject, payload.baseAddress, payload.count, context.baseAddress, context.count, &out,
                        &length)
                }
            }
        }
        defer { free(out) }
        let bytes = out.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
        switch Int(kind) {
        case Int(NEX_JS_BYTES.rawValue): return .reply(bytes)
        case Int(NEX_JS_EMPTY.rawValue): return .reply([])
        case Int(NEX_JS_THREW.rawValue): return .threw(String(decoding: bytes, as: UTF8.self))
        case Int(NEX_JS_PERMANENT.rawValue): return .threwPermanently(String(decoding: bytes, as: UTF8.self))
        default: return .limitExceeded(String(decoding: bytes, as: UTF8.self))
        }
    }
}

/// A function that could not be compiled or set up.
public struct JSError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private func jsHostTrampoline(
    context: UnsafeMutableRawPointer?, service: UnsafePointer<CChar>?, method: UnsafePointer<CChar>?,
    args: UnsafePointer<CChar>?, argsLength: Int, failed: UnsafeMutablePointer<Int32>?,
    resultLength: UnsafeMutablePointer<Int>?
) -> UnsafeMutablePointer<CChar>? {
    let callbacks = Unmanaged<JSFunction.Callbacks>.fromOpaque(context!).takeUnretainedValue()
    let json = String(decoding: UnsafeRawBufferPointer(start: args, count: argsLength), as: UTF8.self)
    let text: String
    do {
        guard let host = callbacks.host else { throw JSError("host services are not available") }
        text = try host(String(cString: service!), String(cString: method!), json)
        failed?.pointee = 0
    } catch {
        text = "\(error)"
        failed?.pointee = 1
    }
    let utf8 = Array(text.utf8)
    let out = malloc(utf8.count + 1)!.assumingMemoryBound(to: CChar.self)
    utf8.withUnsafeBytes { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: utf8.count) }
    out[utf8.count] = 0
    resultLength?.pointee = utf8.count
    return out
}

private func jsLogTrampoline(
    context: UnsafeMutableRawPointer?, level: Int32, text: UnsafePointer<CChar>?, length: Int
) {
    let callbacks = Unmanaged<JSFunction.Callbacks>.fromOpaque(context!).takeUnretainedValue()
    callbacks.log?(Int(level), String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self))
}
