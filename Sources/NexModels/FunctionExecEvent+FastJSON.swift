import Foundation

/// The function-exec CloudEvent written by hand: every trigger publishes one, on the node's event loop, where
/// JSONEncoder took about a fifth of the loop's time under load. Same keys and values as the Codable form.
extension CloudEvent where Payload == FunctionExecEvent {
    /// The event as JSON bytes.
    public func jsonBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(320 + data.triggerSubject.utf8.count + (data.error?.utf8.count ?? 0))
        out += Array(#"{"specversion":"#.utf8)
        JSONText.appendString(specVersion, to: &out)
        for (key, value) in [("id", id), ("source", source), ("type", type), ("time", time)] {
            out += Array(",\"\(key)\":".utf8)
            JSONText.appendString(value, to: &out)
        }
        out += Array(#","datacontenttype":"#.utf8)
        JSONText.appendString(dataContentType, to: &out)
        out += Array(#","data":{"workload_id":"#.utf8)
        JSONText.appendString(data.workloadID, to: &out)
        out += Array(#","workload_name":"#.utf8)
        JSONText.appendString(data.workloadName, to: &out)
        out += Array(#","namespace":"#.utf8)
        JSONText.appendString(data.namespace, to: &out)
        out += Array(#","trigger_subject":"#.utf8)
        JSONText.appendString(data.triggerSubject, to: &out)
        if let elapsed = data.elapsedNanos { out += Array(",\"elapsed_nanos\":\(elapsed)".utf8) }
        if let error = data.error {
            out += Array(#","error":"#.utf8)
            JSONText.appendString(error, to: &out)
        }
        out += Array("}}".utf8)
        return out
    }
}

/// JSON string literals, written by hand.
public enum JSONText {
    /// Appends `text` as a quoted JSON string: quotes, backslashes and control characters escaped, everything
    /// else (UTF-8 included) as is.
    public static func appendString(_ text: String, to out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                out += Array(#"\u00"#.utf8)
                out += [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
