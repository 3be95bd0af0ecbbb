import Foundation
import NIOCore
import Testing

@testable import NATSJetStream

@Suite struct NATSTimestampTests {
    @Test func parsesNanosecondPrecisionAndOffsets() throws {
        let t = try #require(NATSTimestamp(parsing: "2024-05-01T12:34:56.123456789Z"))
        #expect(t.seconds == 1_714_566_896)
        #expect(t.nanoseconds == 123_456_789)
        #expect(t.description == "2024-05-01T12:34:56.123456789Z")
        let short = try #require(NATSTimestamp(parsing: "2024-05-01T12:34:56.5Z"))
        #expect(short.nanoseconds == 500_000_000)
        let offset = try #require(NATSTimestamp(parsing: "2024-05-01T14:34:56+02:00"))
        #expect(offset.seconds == 1_714_566_896 && offset.nanoseconds == 0)
        let zero = try #require(NATSTimestamp(parsing: "0001-01-01T00:00:00Z"))
        #expect(zero.description == "0001-01-01T00:00:00.000000000Z")
        #expect(NATSTimestamp(parsing: "yesterday") == nil)
        #expect(NATSTimestamp(parsing: "2024-05-01T12:34:56") == nil)
    }

    @Test func roundTripsThroughItsText() throws {
        for seconds in [Int64(0), 1, 86_399, 951_782_400, 1_795_254_297, 4_102_444_800] {
            let t = NATSTimestamp(seconds: seconds, nanoseconds: 7)
            #expect(NATSTimestamp(parsing: t.description) == t)
        }
    }
}

@Suite struct AckMetadataTests {
    @Test func parsesTheClassicAckSubject() throws {
        let m = try #require(
            JetStreamMessage.Metadata(ackSubject: "$JS.ACK.ORDERS.worker.2.1045.17.1714566896123456789.42"))
        #expect(m.stream == "ORDERS" && m.consumer == "worker" && m.domain == nil)
        #expect(m.delivered == 2 && m.streamSequence == 1045 && m.consumerSequence == 17 && m.pending == 42)
        #expect(m.timestamp.seconds == 1_714_566_896 && m.timestamp.nanoseconds == 123_456_789)
    }

    @Test func parsesTheDomainAckSubject() throws {
        let m = try #require(
            JetStreamMessage.Metadata(ackSubject: "$JS.ACK.hub.ACCHASH.ORDERS.worker.1.5.5.1714566896000000000.0.tok"))
        #expect(m.domain == "hub" && m.stream == "ORDERS" && m.streamSequence == 5)
        let noDomain = try #require(
            JetStreamMessage.Metadata(ackSubject: "$JS.ACK._.ACCHASH.S.c.1.5.5.1714566896000000000.0.tok"))
        #expect(noDomain.domain == nil)
    }

    @Test(arguments: ["_INBOX.x", "$JS.ACK.S.c.1.2", "$JS.ACK.S.c.x.2.3.4.5", "$JS.NAK.S.c.1.2.3.4.5"])
    func rejectsOtherSubjects(_ s: String) { #expect(JetStreamMessage.Metadata(ackSubject: s) == nil) }
}

@Suite struct ConfigCodingTests {
    @Test func durationsAreNanosecondsAndAbsentWhenNil() throws {
        var c = StreamConfig(name: "S", subjects: ["s.>"])
        c.maxAge = .seconds(90)
        let json = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        #expect(json.contains(#""max_age":90000000000"#))
        #expect(!json.contains("duplicate_window"))
        let back = try JSONDecoder().decode(StreamConfig.self, from: Data(json.utf8))
        #expect(back.maxAge == .seconds(90) && back.duplicateWindow == nil)
    }
}

@Suite struct PubAckParsingTests {
    @Test(arguments: [
        (#"{"stream":"ORDERS","seq":42}"#, PubAck(stream: "ORDERS", sequence: 42)),
        (#"{"stream":"S","seq":7,"duplicate":true}"#, PubAck(stream: "S", sequence: 7, duplicate: true)),
        (#"{"stream":"S","seq":1,"domain":"hub"}"#, PubAck(stream: "S", sequence: 1, domain: "hub")),
    ])
    func fastPathReadsTheCommonShapes(_ json: String, _ expected: PubAck) throws {
        #expect(PubAck(fastParsing: ByteBuffer(string: json)) == expected)
        // The slow path agrees.
        #expect(try JSONDecoder().decode(PubAck.self, from: Data(json.utf8)) == expected)
    }

    @Test(arguments: [
        #"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"S","seq":0}"#,
        #"{"seq":1,"stream":"S"}"#, #"{"stream":"S","seq":1,"extra":2}"#, "not json", #"{"stream":"S","seq":x}"#,
    ])
    func otherShapesFallBack(_ json: String) {
        #expect(PubAck(fastParsing: ByteBuffer(string: json)) == nil)
    }

    @Test func errorScan() {
        #expect(JetStreamContext.mentionsError(ByteBuffer(string: #"{"error":{}}"#)))
        #expect(!JetStreamContext.mentionsError(ByteBuffer(string: #"{"stream":"S","seq":1}"#)))
        #expect(!JetStreamContext.mentionsError(ByteBuffer(string: "")))
    }
}
