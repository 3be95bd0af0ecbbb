import NATSProtocol
import Testing

struct TraceParentTests {
    @Test func aValidHeaderRoundTrips() throws {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let parent = try #require(TraceParent(header: text))
        #expect(parent.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(parent.parentSpanID == "00f067aa0ba902b7")
        #expect(parent.sampled)
        #expect(parent.description == text)
        #expect(TraceParent(header: " " + text + "\t") == parent)
    }

    @Test(arguments: [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  // no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // version 00 has four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  // not hex
    ])
    func malformedHeadersAreRejected(_ text: String) {
        #expect(TraceParent(header: text) == nil)
    }

    @Test func aLaterVersionIsReadByItsFirstFourFields() {
        let parent = TraceParent(header: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more")
        #expect(parent?.sampled == false && parent?.description.hasPrefix("00-4bf92f") == true)
    }

    @Test func headersCarryIt() throws {
        var headers = NATSHeaders()
        #expect(headers.traceParent == nil)
        let parent = try #require(
            TraceParent(traceID: "4bf92f3577b34da6a3ce929d0e0e4736", parentSpanID: "00f067aa0ba902b7"))
        headers.traceParent = parent
        headers.traceParent = parent  // replaced, not repeated
        #expect(headers.values(for: "traceparent") == [parent.description])
        headers.traceParent = nil
        #expect(headers["traceparent"] == nil)
    }
}
