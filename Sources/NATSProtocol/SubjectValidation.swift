/// Checks of subjects and queue names before they reach the wire.
public enum SubjectValidation {
    /// A subject to publish to: non-empty tokens, no whitespace, no wildcards.
    @inlinable
    public static func isValidPublishSubject(_ subject: String) -> Bool {
        // In place (no copy of the string to make it contiguous, which it nearly always is already).
        if let valid = subject.utf8.withContiguousStorageIfAvailable({ check($0, wildcards: false) }) { return valid }
        var subject = subject
        return subject.withUTF8 { check($0, wildcards: false) }
    }

    /// A subject to subscribe to: non-empty tokens, no whitespace; `*` and `>` as whole tokens, `>` last.
    public static func isValidSubscribeSubject(_ subject: String) -> Bool {
        var subject = subject
        return subject.withUTF8 { check($0, wildcards: true) }
    }

    /// A queue group name: non-empty, no whitespace.
    public static func isValidQueueName(_ queue: String) -> Bool {
        !queue.isEmpty && !queue.utf8.contains { $0 == 32 || $0 == 9 || $0 == 13 || $0 == 10 }
    }

    @usableFromInline
    static func check(_ s: UnsafeBufferPointer<UInt8>, wildcards: Bool) -> Bool {
        guard let base = s.baseAddress, !s.isEmpty else { return false }
        let count = s.count
        var tokenStart = 0
        var i = 0
        while i < count {
            let c = base[i]
            // Letters and most punctuation sort above every byte that needs a look: one compare for them.
            if c > UInt8(ascii: ">") {
                i += 1
                continue
            }
            if c == UInt8(ascii: ".") {
                guard isValidToken(base + tokenStart, length: i - tokenStart, last: false, wildcards: wildcards)
                else { return false }
                tokenStart = i + 1
            } else if c == 32 || c == 9 || c == 13 || c == 10 || c == 0 {
                return false
            }
            i += 1
        }
        return isValidToken(base + tokenStart, length: count - tokenStart, last: true, wildcards: wildcards)
    }

    /// A token is non-empty; `*` and `>` alone are wildcards, allowed only when subscribing and `>` only last.
    @inline(__always)
    static func isValidToken(_ token: UnsafePointer<UInt8>, length: Int, last: Bool, wildcards: Bool) -> Bool {
        guard length > 0 else { return false }
        guard length == 1 else { return true }
        switch token.pointee {
        case UInt8(ascii: "*"): return wildcards
        case UInt8(ascii: ">"): return wildcards && last
        default: return true
        }
    }
}
