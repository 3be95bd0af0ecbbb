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
        guard !s.isEmpty else { return false }
        var tokenStart = 0
        var i = 0
        while i <= s.count {
            if i == s.count || s[i] == UInt8(ascii: ".") {
                let length = i - tokenStart
                if length == 0 { return false }
                if length == 1 {
                    let c = s[tokenStart]
                    if c == UInt8(ascii: "*") || c == UInt8(ascii: ">") {
                        if !wildcards { return false }
                        if c == UInt8(ascii: ">") && i != s.count { return false }
                    }
                }
                tokenStart = i + 1
            } else {
                let c = s[i]
                if c == 32 || c == 9 || c == 13 || c == 10 || c == 0 { return false }
            }
            i += 1
        }
        return true
    }
}
