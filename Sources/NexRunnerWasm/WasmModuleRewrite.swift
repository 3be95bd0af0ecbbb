/// Rewrites a module before V8 compiles it, in two ways:
///
/// - Its linear memory is capped: the declared maximum becomes at most the function's limit, so the engine
///   itself refuses `memory.grow` past it (the guest sees -1, as for any full memory).
/// - A module defining exactly one memory gets it as an import (`nex.memory`) instead, with the same limits.
///   The runtime can then hand each new instance a memory it zeroed, rather than have V8 map (and later
///   unmap) a new one for every trigger; mapping was most of a trigger's cost. Active data segments are
///   written at every instantiation, so the instance starts exactly as with a memory of its own.
///
/// Everything else in the module is kept byte for byte.
enum WasmModuleRewrite {
    static let pageBytes = 65_536

    /// The rewritten module, and the limits of the memory it imports when its own memory was hoisted.
    struct Prepared: Equatable {
        var bytes: [UInt8]
        var importedMemory: MemoryLimits?
    }

    /// Memory limits in 64 KiB pages.
    struct MemoryLimits: Equatable {
        var minimumPages: UInt32
        var maximumPages: UInt32
    }

    /// `module` with every memory's maximum at most `limitBytes`, and a single defined memory turned into
    /// the import `nex.memory`; throws when the module is not WebAssembly, is malformed, or needs more than
    /// the limit to start.
    static func prepare(_ module: [UInt8], limitBytes: Int) throws(WasmError) -> Prepared {
        let header: [UInt8] = [0x00, 0x61, 0x73, 0x6D, 0x01, 0x00, 0x00, 0x00]
        guard module.count >= 8, Array(module[0..<8]) == header else {
            throw WasmError("not a WebAssembly module: it does not start with the binary format's magic and version 1")
        }
        let limitPages = UInt32(min(limitBytes / pageBytes, 65_536))
        var sections: [(id: UInt8, body: [UInt8])] = []
        var reader = Reader(bytes: module, offset: 8)
        while !reader.atEnd {
            let id = try reader.byte()
            let size = Int(try reader.leb128())
            sections.append((id, try reader.take(size)))
        }
        if let imports = sections.first(where: { $0.id == importSection }),
            let memory = try importedMemoryName(imports.body)
        {
            // An outside memory would escape both the cap and the fresh memory per trigger.
            throw WasmError("the module imports a memory (\(memory)); a Nex function must define its own")
        }
        var hoisted: MemoryLimits?
        if let index = sections.firstIndex(where: { $0.id == memorySection }) {
            let memories = try cappedMemories(sections[index].body, limitPages: limitPages)
            if memories.count == 1 {
                hoisted = memories[0]
                sections.remove(at: index)
                try addMemoryImport(memories[0], to: &sections)
            } else {
                var body: [UInt8] = []
                appendLEB128(UInt32(memories.count), to: &body)
                for memory in memories { appendLimits(memory, to: &body) }
                sections[index].body = body
            }
        }
        var out = header
        for section in sections {
            out.append(section.id)
            appendLEB128(UInt32(section.body.count), to: &out)
            out += section.body
        }
        return Prepared(bytes: out, importedMemory: hoisted)
    }

    private static let importSection: UInt8 = 2
    private static let memorySection: UInt8 = 5

    private static func cappedMemories(_ body: [UInt8], limitPages: UInt32) throws(WasmError) -> [MemoryLimits] {
        var reader = Reader(bytes: body, offset: 0)
        let count = try reader.leb128()
        var memories: [MemoryLimits] = []
        for _ in 0..<count {
            let flags = try reader.byte()
            guard flags <= 1 else {
                throw WasmError("the module declares a shared or 64-bit memory, which Nex does not run")
            }
            let minimum = try reader.leb128()
            let maximum = flags == 1 ? try reader.leb128() : limitPages
            guard minimum <= limitPages else {
                throw WasmError(
                    "the module needs \((Int(minimum) * pageBytes + (1 << 20) - 1) >> 20) MiB of memory to start; the limit is "
                        + "\(Int(limitPages) * pageBytes >> 20) MiB (function_limits.memory_mib)")
            }
            memories.append(MemoryLimits(minimumPages: minimum, maximumPages: min(maximum, limitPages)))
        }
        guard reader.atEnd else { throw WasmError("the module's memory section is malformed") }
        return memories
    }

    /// The `module.name` of the first memory the import section brings in, if any.
    private static func importedMemoryName(_ body: [UInt8]) throws(WasmError) -> String? {
        var reader = Reader(bytes: body, offset: 0)
        let count = try reader.leb128()
        for _ in 0..<count {
            let module = try reader.name()
            let name = try reader.name()
            switch try reader.byte() {
            case 0x00: _ = try reader.leb128()  // a function: its type
            case 0x01:  // a table: element type, limits
                _ = try reader.byte()
                try reader.skipLimits()
            case 0x02: return "\(module).\(name)"
            case 0x03: _ = try reader.take(2)  // a global: value type, mutability
            case 0x04:  // a tag: attribute, type
                _ = try reader.byte()
                _ = try reader.leb128()
            default: throw WasmError("the module's import section is malformed")
            }
        }
        return nil
    }

    /// Appends `nex.memory` to the imports. Memories are indexed imports first, and the module imports none
    /// of its own (refused above), so the hoisted memory keeps index 0; function,
    /// table and global indices do not change because the new import is a memory.
    private static func addMemoryImport(
        _ memory: MemoryLimits, to sections: inout [(id: UInt8, body: [UInt8])]
    ) throws(WasmError) {
        var entry: [UInt8] = []
        for name in ["nex", "memory"] {
            appendLEB128(UInt32(name.utf8.count), to: &entry)
            entry += Array(name.utf8)
        }
        entry.append(0x02)  // a memory
        appendLimits(memory, to: &entry)
        if let index = sections.firstIndex(where: { $0.id == importSection }) {
            var reader = Reader(bytes: sections[index].body, offset: 0)
            let count = try reader.leb128()
            var body: [UInt8] = []
            appendLEB128(count + 1, to: &body)
            body += sections[index].body[reader.offset...]
            sections[index].body = body + entry
        } else {
            // Known sections come in id order; the imports go after any types and before everything else.
            let at = sections.firstIndex(where: { $0.id > importSection }) ?? sections.count
            sections.insert((importSection, [0x01] + entry), at: at)
        }
    }

    private static func appendLimits(_ memory: MemoryLimits, to out: inout [UInt8]) {
        out.append(0x01)  // minimum and maximum
        appendLEB128(memory.minimumPages, to: &out)
        appendLEB128(memory.maximumPages, to: &out)
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

        /// A length-prefixed UTF-8 name (lossy: it is only shown in messages).
        mutating func name() throws(WasmError) -> String {
            String(decoding: try take(Int(try leb128())), as: UTF8.self)
        }

        /// Table or memory limits: flags, minimum, and a maximum when flag bit 0 is set.
        mutating func skipLimits() throws(WasmError) {
            let flags = try byte()
            _ = try leb128()
            if flags & 1 == 1 { _ = try leb128() }
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
