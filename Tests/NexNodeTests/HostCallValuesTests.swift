import Foundation
import NexModels
import Testing

@testable import NexNode

/// Host-call arguments and results as the agent writes and reads them.
@Suite struct HostCallValuesTests {
    func arguments(_ json: String) throws -> HostCallArguments { try HostCallArguments(json: Array(json.utf8)) }

    @Test func argumentsReadBytesStringsAndOtherValues() throws {
        let args = try arguments(#"["key", {"$bytes": [0, 7, 255]}, null, {"b": 2, "a": [1, 1.5, true]}]"#)
        #expect(try args.string(0, "key") == "key")
        #expect(try args.bytes(1) == [0, 7, 255])
        #expect(try args.bytes(2) == [] && args.bytes(9) == [])
        #expect(try args.bytes(0) == Array("key".utf8))
        // Any other value is passed on as its JSON text, keys sorted.
        #expect(try String(decoding: args.bytes(3), as: UTF8.self) == #"{"a":[1,1.5,true],"b":2}"#)
        #expect(args[3]?["b"]?.intValue == 2 && args[1] == nil)
    }

    @Test func badArgumentsAreRefusedWithTheReason() throws {
        #expect(throws: NexError.self) { try arguments(#"{"not": "an array"}"#) }
        #expect(throws: NexError.self) { try arguments("[1,") }
        let wrong = try arguments(#"[42, {"$bytes": [256]}]"#)
        let notString = #expect(throws: NexError.self) { try wrong.string(0, "subject") }
        #expect(notString?.message == "subject must be a string")
        let notBytes = #expect(throws: NexError.self) { try wrong.bytes(1) }
        #expect(notBytes?.message.contains("0 to 255") == true)
    }

    @Test func resultsAreWrittenAsTheAgentReadsThem() throws {
        func text(_ result: HostCallResult) throws -> String { String(decoding: try result.json(), as: UTF8.self) }
        #expect(try text(.null) == "null")
        #expect(try text(.bytes([1, 2])) == #"{"$bytes":[1,2]}"#)
        #expect(try text(.list([.bytes([3]), .null])) == #"[{"$bytes":[3]},null]"#)
        #expect(try text(.strings(["a/b"])) == #"["a/b"]"#)
        #expect(try text(.objects([.init(name: "o", size: 3)])) == #"[{"name":"o","size":3}]"#)
        #expect(
            try text(.http(.init(status: 200, headers: ["x": "y"], body: "hi")))
                == #"{"body":"hi","headers":{"x":"y"},"status":200}"#)
    }
}
