import Foundation
import NexModels
import Testing

@Suite struct FunctionExecEventJSONTests {
    /// The hand-written form decodes to the same event as the Codable form, awkward strings included.
    @Test(arguments: [
        FunctionExecEvent(
            workloadID: "abc", workloadName: "echo", namespace: "default", triggerSubject: "fn.echo", elapsedNanos: 42),
        FunctionExecEvent(
            workloadID: "i\"d", workloadName: "n\\ame", namespace: "ns", triggerSubject: "fn.é.🙂",
            error: "Error: boom\n    at <anonymous>:1:7\t\u{1}\r/"),
    ])
    func handWrittenJSONDecodesToTheSameEvent(data: FunctionExecEvent) throws {
        let event = CloudEvent(id: "E1", source: "NODE", type: NexEventType.functionExecFailed, data: data)
        let decoded = try JSONDecoder().decode(CloudEvent<FunctionExecEvent>.self, from: Data(event.jsonBytes()))
        #expect(decoded.data == data)
        #expect(decoded.id == "E1" && decoded.source == "NODE" && decoded.type == event.type)
        #expect(decoded.time == event.time && decoded.specVersion == "1.0")
        #expect(decoded.dataContentType == "application/json")
        // The same keys as the Codable form.
        let fast = try JSONSerialization.jsonObject(with: Data(event.jsonBytes())) as? NSDictionary
        let slow = try JSONSerialization.jsonObject(with: JSONEncoder().encode(event)) as? NSDictionary
        #expect(fast == slow)
    }
}
