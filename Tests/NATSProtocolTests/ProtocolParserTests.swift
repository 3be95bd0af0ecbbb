import NIOCore
import Testing

@testable import NATSProtocol

/// An HMSG with its lengths computed.
func hmsg(_ subject: String, _ sid: Int, _ reply: String?, _ headerBlock: String, _ payload: String) -> String {
    let h = headerBlock.utf8.count
    let r = reply.map { " \($0)" } ?? ""
    return "HMSG \(subject) \(sid)\(r) \(h) \(h + payload.utf8.count)\r\n\(headerBlock)\(payload)\r\n"
}

/// A stream of server operations covering every op, headers, replies, empty and binary payloads.
let sampleStream =
    "INFO {\"server_id\":\"S1\",\"version\":\"2.15.1\",\"max_payload\":1048576,\"headers\":true,\"connect_urls\":[\"10.0.0.2:4222\"]}\r\n"
    + "PING\r\n" + "PONG\r\n" + "+OK\r\n"
    + "MSG foo.bar 1 5\r\nhello\r\n"
    + "MSG foo.bar 12 _INBOX.abc.1 0\r\n\r\n"
    + hmsg("svc.echo", 3, "_INBOX.x", "NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n", "world")
    + hmsg("_INBOX.r.7", 4, nil, "NATS/1.0 503 No Responders\r\n\r\n", "")
    + "msg lower.case 5 3\r\n\r\n\u{1}\r\n"
    + "-ERR 'Permissions Violation for Publish to \"secret\"'\r\n"

/// Parses everything in `chunks`, feeding them one at a time as a socket would.
func parseAll(_ chunks: [[UInt8]], parser: ProtocolParser = ProtocolParser()) throws -> [ServerOp] {
    var parser = parser
    var buffer = ByteBuffer()
    var ops: [ServerOp] = []
    for chunk in chunks {
        buffer.writeBytes(chunk)
        while let op = try parser.next(&buffer) { ops.append(op) }
    }
    #expect(buffer.readableBytes == 0)
    return ops
}

/// A comparable rendering of an op.
func describe(_ op: ServerOp) -> String {
    switch op {
    case .info(let i): return "INFO \(i.serverID) \(i.maxPayload) \(i.connectURLs ?? [])"
    case .ping: return "PING"
    case .pong: return "PONG"
    case .ok: return "OK"
    case .error(let e): return "ERR \(e)"
    case .message(let m):
        let h = m.headers.map { h in
            "\(h.status ?? 0)|\(h.statusDescription ?? "")|\(h.map { "\($0.name)=\($0.value)" })"
        }
        return "MSG \(m.subject) \(m.sid) \(m.replyTo ?? "-") \(h ?? "nil") \(Array(m.payload.readableBytesView))"
    }
}

@Suite struct ProtocolParserTests {
    let bytes = Array(sampleStream.utf8)

    @Test func parsesEveryOperation() throws {
        let ops = try parseAll([bytes]).map(describe)
        #expect(
            ops == [
                "INFO S1 1048576 [\"10.0.0.2:4222\"]", "PING", "PONG", "OK",
                "MSG foo.bar 1 - nil \(Array("hello".utf8))",
                "MSG foo.bar 12 _INBOX.abc.1 nil []",
                "MSG svc.echo 3 _INBOX.x 0||[\"A=1\", \"A=2\"] \(Array("world".utf8))",
                "MSG _INBOX.r.7 4 - 503|No Responders|[] []",
                "MSG lower.case 5 - nil [13, 10, 1]",
                "ERR Permissions Violation for Publish to \"secret\"",
            ])
    }

    @Test func resultDoesNotDependOnWhereTheStreamIsSplit() throws {
        let whole = try parseAll([bytes]).map(describe)
        for split in 0...bytes.count {
            let ops = try parseAll([Array(bytes[..<split]), Array(bytes[split...])]).map(describe)
            #expect(ops == whole, "split at \(split)")
        }
    }

    @Test func byteAtATimeGivesTheSameResult() throws {
        let whole = try parseAll([bytes]).map(describe)
        #expect(try parseAll(bytes.map { [$0] }).map(describe) == whole)
    }

    @Test func incompleteInputConsumesNothing() throws {
        var parser = ProtocolParser()
        var buffer = ByteBuffer(string: "MSG foo 1 10\r\nhel")
        #expect(try parser.next(&buffer) == nil)
        #expect(buffer.readableBytes == 17)
    }

    @Test(arguments: [
        "FOO bar\r\n", "MSG foo\r\n", "MSG foo x 3\r\nabc\r\n", "MSG foo 1 -3\r\n", "HMSG foo 1 10 5\r\n",
        "PINGX\r\n", "\r\n",
    ])
    func garbageIsATypedError(_ input: String) {
        var parser = ProtocolParser()
        var buffer = ByteBuffer(string: input)
        #expect(throws: ProtocolError.self) { try parser.next(&buffer) }
    }

    @Test func payloadNotEndingInCRLFIsAnError() {
        var parser = ProtocolParser()
        var buffer = ByteBuffer(string: "MSG foo 1 3\r\nabcXY")
        #expect(throws: ProtocolError(.malformedPayload, "payload of foo not followed by CRLF")) {
            try parser.next(&buffer)
        }
    }

    @Test func overlongControlLineIsAnError() {
        var parser = ProtocolParser(maxControlLineLength: 64)
        var buffer = ByteBuffer(string: "MSG " + String(repeating: "a", count: 100))
        #expect(throws: ProtocolError.self) { try parser.next(&buffer) }
    }

    @Test func oversizePayloadIsRejectedBeforeBuffering() {
        var parser = ProtocolParser(maxPayload: 100)
        var buffer = ByteBuffer(string: "MSG foo 1 1000\r\n")
        #expect(throws: ProtocolError.self) { try parser.next(&buffer) }
    }

    @Test func malformedInfoIsAnError() {
        var parser = ProtocolParser()
        var buffer = ByteBuffer(string: "INFO {not json}\r\n")
        #expect(throws: ProtocolError.self) { try parser.next(&buffer) }
    }
}
