/// Caps a module's linear memory by rewriting its memory section: the declared maximum becomes at most the
/// function's limit, so the engine itself refuses `memory.grow` past it (the guest sees -1, as for any full
/// memory). Everything else in the module is kept byte for byte.
enum WasmMemoryCap {
    static let pageBytes = 65_536

    /// `module` with every memory's maximum at most `limitBytes`; throws when the module is not WebAssembly,
    /// is malformed, or needs more than the limit to start.
    static func apply(to module: [UInt8], limitBytes: Int) throws(WasmError) -> [UInt8] {
        let header: [UInt8] = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
        guard module.count >= 8, Array(module[0..<8]) == header else {
            throw WasmError("not a WebAssembly module: it does not start with the binary format's magic and version 1")
        }
        let limitPages = UInt32(min(limitBytes / pageBytes, 65_536))
        var out = header
        var reader = Reader(bytes: module, offset: 8)
        while !reader.atEnd {
            let id = try reader.byte()
            let size = Int(try reader.leb128())
            let body = try reader.take(size)
            guard id == 5 else {
                out.append(id)
                appendLEB128(UInt32(size), to: &out)
                out += body
                continue
            }
            let section = try capped(memorySection: body, limitPages: limitPages)
            out.append(id)
            appendLEB128(UInt32(section.count), to: &out)
            out += section
        }
        return out
    }

    private static func capped(memorySection body: [UInt8], limitPages: UInt32) throws(WasmError) -> [UInt8] {
        var reader = Reader(bytes: body, offset: 0)
        let count = try reader.leb128()
        var out: [UInt8] = []
        appendLEB128(count, to: &out)
        for _ in 0..<count {
            let flags = try reader.byte()
            guard flags <= 1 else {
                throw WasmError("the module declares a shared or 64-bit memory, which Nex does not run")
            }
            let minimum = try reader.leb128()
            let maximum = flags == 1 ? try reader.leb128() : limitPages
            guard minimum <= limitPages else {
                throw WasmError(
                    "the module needs \(Int(minimum) * pageBytes >> 20) MiB of memory to start; the limit is "
                        + "\(Int(limitPages) * pageBytes >> 20) MiB (function_limits.memory_mib)")
            }
            out.append(1)
            appendLEB128(minimum, to: &out)
            appendLEB128(min(maximum, limitPages), to: &out)
        }
        guard reader.atEnd else { throw WasmError("the module's memory section is malformed") }
        return out
    }

    static func appendLEB128(_ value: UInt32, to out: inout [UInt8]) {
        var value = value
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            out.append(byte)
        } while value != 0
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset: Int
        var atEnd: Bool { offset >= bytes.count }

        mutating func byte() throws(WasmError) -> UInt8 {
            guard offset < bytes.count else { throw WasmError("the module is truncated") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func take(_ count: Int) throws(WasmError) -> [UInt8] {
            guard count <= bytes.count - offset else { throw WasmError("the module is truncated") }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }

        /// An unsigned LEB128 of at most 32 bits, as the binary format's u32.
        mutating func leb128() throws(WasmError) -> UInt32 {
            var result: UInt32 = 0
            for shift in stride(from: 0, through: 28, by: 7) {
                let b = try byte()
                guard shift < 28 || b & 0x70 == 0 else { throw WasmError("the module has an integer out of range") }
                result |= UInt32(b & 0x7F) << UInt32(shift)
                if b & 0x80 == 0 { return result }
            }
            throw WasmError("the module has an integer out of range")
        }
    }
}
