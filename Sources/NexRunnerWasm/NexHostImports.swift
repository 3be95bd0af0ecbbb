import Foundation
@_spi(Fuzzing) import WasmKit

/// Host services for WebAssembly (Nex never had them): the import module `nex`, documented in
/// examples/wasm/nex_host.h. Every function takes pointers and lengths into the guest's memory:
///
///     nex_host_call(service_ptr, service_len, method_ptr, method_len, args_ptr, args_len,
///                   result_ptr, result_capacity) -> i32
///
/// `args` is a JSON array (byte values as `{"$bytes": [...]}`, as for JavaScript). The JSON result (or the
/// error message) is written to `result`; the return value is its length, negated for an error, or
/// `-(needed + 1_000_000_000)` when the buffer is too small (call again with a bigger one).
public struct NexHostImports: HostImports {
    let call: @Sendable (String, String, String) throws -> String

    public init(call: @escaping @Sendable (String, String, String) throws -> String) {
        self.call = call
    }

    public func link(to imports: inout Imports, store: Store) {
        let call = self.call
        let type = FunctionType(parameters: Array(repeating: .i32, count: 8), results: [.i32])
        imports.define(
            module: "nex", name: "host_call",
            Function(store: store, type: type) { caller, args in
                guard case .memory(let memory) = caller.instance?.export("memory") else {
                    throw WasmError("the module exports no memory")
                }
                func string(_ ptr: Value, _ len: Value) throws -> String {
                    let bytes = try read(memory, ptr.i32, len.i32)
                    return String(decoding: bytes, as: UTF8.self)
                }
                let service = try string(args[0], args[1])
                let method = try string(args[2], args[3])
                let arguments = try string(args[4], args[5])
                let capacity = Int(args[7].i32)
                var failed = false
                var result: String
                do { result = try call(service, method, arguments) } catch {
                    result = "\(error)"
                    failed = true
                }
                let bytes = Array(result.utf8)
                guard bytes.count <= capacity else {
                    return [.i32(UInt32(bitPattern: -Int32(bytes.count + 1_000_000_000)))]
                }
                try write(memory, args[6].i32, bytes)
                return [.i32(UInt32(bitPattern: failed ? -Int32(bytes.count) : Int32(bytes.count)))]
            })
    }

    private func read(_ memory: Memory, _ pointer: UInt32, _ length: UInt32) throws -> [UInt8] {
        guard Int(pointer) + Int(length) <= memory.byteCount else {
            throw WasmError("host call arguments out of bounds")
        }
        return memory.withUnsafeBufferPointer(offset: UInt(pointer), count: Int(length)) { Array($0) }
    }

    private func write(_ memory: Memory, _ pointer: UInt32, _ bytes: [UInt8]) throws {
        guard Int(pointer) + bytes.count <= memory.byteCount else { throw WasmError("host call result out of bounds") }
        memory.withUnsafeMutableBufferPointer(offset: UInt(pointer), count: bytes.count) { buffer in
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        }
    }
}
