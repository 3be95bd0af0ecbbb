import NIOCore
import Testing

@testable import NATSProtocol

@Suite struct ClientOpTests {
    func written(_ body: (inout ByteBuffer) -> Void) -> String {
        var b = ByteBuffer()
        body(&b)
        return String(buffer: b)
    }

    func pub(_ subject: String, _ reply: String?, _ payload: [UInt8]) -> String {
        written { b in
            payload.withUnsafeBytes {
                ClientOp.writePublish(subject: subject, replyTo: reply, headers: nil, payload: $0, into: &b)
            }
        }
    }

    func sub(_ subject: String, _ queue: String?, _ sid: UInt64) -> String {
        written { ClientOp.writeSubscribe(subject: subject, queue: queue, sid: sid, into: &$0) }
    }

    func unsub(_ sid: UInt64, _ max: Int?) -> String {
        written { ClientOp.writeUnsubscribe(sid: sid, max: max, into: &$0) }
    }

    @Test func publishWithAndWithoutReply() {
        #expect(pub("a.b", nil, Array("hi".utf8)) == "PUB a.b 2\r\nhi\r\n")
        #expect(pub("a", "r.1", []) == "PUB a r.1 0\r\n\r\n")
        #expect(pub("a", "", Array("x".utf8)) == "PUB a 1\r\nx\r\n", "an empty reply subject is none")
        #expect(pub("a", nil, [UInt8](repeating: 65, count: 1234)).hasPrefix("PUB a 1234\r\nAAA"))
        #expect(pub("é.1", "_INBOX.x", Array("0123456789".utf8)) == "PUB é.1 _INBOX.x 10\r\n0123456789\r\n")
        // Appended after what is already in the buffer.
        let two = written { b in
            for subject in ["a", "bc"] {
                [UInt8(7)].withUnsafeBytes {
                    ClientOp.writePublish(subject: subject, replyTo: nil, headers: nil, payload: $0, into: &b)
                }
            }
        }
        #expect(two == "PUB a 1\r\n\u{7}\r\nPUB bc 1\r\n\u{7}\r\n")
    }

    @Test func publishWithHeadersCountsTheHeaderBlock() throws {
        var h = NATSHeaders()
        h.append("Nats-Msg-Id", "1")
        h.append("X", "a")
        h.append("X", "b")
        let text = written { b in
            Array("body".utf8).withUnsafeBytes {
                ClientOp.writePublish(subject: "s", replyTo: "r", headers: h, payload: $0, into: &b)
            }
        }
        let block = "NATS/1.0\r\nNats-Msg-Id: 1\r\nX: a\r\nX: b\r\n\r\n"
        #expect(text == "HPUB s r \(block.utf8.count) \(block.utf8.count + 4)\r\n\(block)body\r\n")
        #expect(h.encodedLength == block.utf8.count)
    }

    @Test func subscribeAndUnsubscribe() {
        #expect(sub("a.*", nil, 7) == "SUB a.* 7\r\n")
        #expect(sub("a.>", "q", 12) == "SUB a.> q 12\r\n")
        #expect(unsub(12, nil) == "UNSUB 12\r\n")
        #expect(unsub(3, 100) == "UNSUB 3 100\r\n")
    }

    @Test func decimalWriterMatchesString() {
        for v in [0, 1, 9, 10, 99, 100, 12345, 1 << 40, Int.max] {
            var b = ByteBuffer()
            b.writeDecimal(v)
            #expect(String(buffer: b) == String(v))
        }
    }
}

@Suite struct HeadersTests {
    @Test func multiValuedAndCasePreserving() {
        var h = NATSHeaders()
        h.append("Trace-Id", "1")
        h.append("trace-id", "2")
        h.append("Trace-Id", "3")
        #expect(h["Trace-Id"] == "1")
        #expect(h.values(for: "Trace-Id") == ["1", "3"])
        #expect(h["trace-id"] == "2")
        h["Trace-Id"] = "only"
        #expect(h.values(for: "Trace-Id") == ["only"])
        h["Trace-Id"] = nil
        #expect(h.values(for: "Trace-Id").isEmpty)
    }

    @Test func roundTripsThroughTheWireForm() throws {
        var h: NATSHeaders = ["Content-Type": "text/plain", "X-Empty": ""]
        h.append("X-Multi", "a b c")
        h.status = 408
        h.statusDescription = "Request Timeout"
        var b = ByteBuffer()
        let n = h.write(into: &b)
        #expect(n == h.encodedLength)
        let parsed = try NATSHeaders.parse(b)
        #expect(parsed == h)
    }

    @Test func statusLines() throws {
        let noResponders = try NATSHeaders.parse(ByteBuffer(string: "NATS/1.0 503\r\n\r\n"))
        #expect(noResponders.status == 503 && noResponders.statusDescription == nil)
        let conflict = try NATSHeaders.parse(ByteBuffer(string: "NATS/1.0 409 Consumer Deleted\r\n\r\n"))
        #expect(conflict.status == 409 && conflict.statusDescription == "Consumer Deleted")
        let heartbeat = try NATSHeaders.parse(
            ByteBuffer(string: "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\n\r\n"))
        #expect(heartbeat.status == 100 && heartbeat["Nats-Last-Consumer"] == "5")
    }

    @Test func invalidHeadersAreRejected() {
        #expect(throws: ProtocolError.self) { try NATSHeaders.parse(ByteBuffer(string: "HTTP/1.1 200\r\n\r\n")) }
        #expect(throws: ProtocolError.self) { try NATSHeaders.parse(ByteBuffer(string: "NATS/1.0 5x3\r\n\r\n")) }
        #expect(throws: ProtocolError.self) { try NATSHeaders(dictionaryLiteral: ("Bad Name", "v")).validate() }
        #expect(throws: ProtocolError.self) { try NATSHeaders(dictionaryLiteral: ("N", "a\r\nInjected: 1")).validate() }
        #expect(throws: ProtocolError.self) { try NATSHeaders(dictionaryLiteral: ("Colon:", "v")).validate() }
    }
}

@Suite struct SubjectValidationTests {
    @Test(arguments: ["foo", "foo.bar", "_INBOX.abc.1", "$JS.API.INFO", "a-b_c.d~e", "a.*b.>c", "1.2.3", "é.ü", "x>"])
    func validPublishSubjects(_ s: String) { #expect(SubjectValidation.isValidPublishSubject(s)) }

    @Test(arguments: [
        "", "foo..bar", ".foo", "foo.", "foo bar", "foo\tbar", "foo\r\n", "foo.*", "foo.>", "*", ">.a", "a.\u{0}",
        "a.b\n",
    ])
    func invalidPublishSubjects(_ s: String) { #expect(!SubjectValidation.isValidPublishSubject(s)) }

    @Test(arguments: ["foo.*", "foo.>", ">", "*.*", "a.*.c", "foo"])
    func validSubscribeSubjects(_ s: String) { #expect(SubjectValidation.isValidSubscribeSubject(s)) }

    @Test(arguments: ["", "foo.>.bar", "foo..*", "a b", "foo."])
    func invalidSubscribeSubjects(_ s: String) { #expect(!SubjectValidation.isValidSubscribeSubject(s)) }

    @Test func queueNames() {
        #expect(SubjectValidation.isValidQueueName("workers"))
        #expect(!SubjectValidation.isValidQueueName(""))
        #expect(!SubjectValidation.isValidQueueName("a b"))
    }
}
