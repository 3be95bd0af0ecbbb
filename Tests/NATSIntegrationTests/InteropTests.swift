import Foundation
import NATS
import NATSTestSupport
import Testing

/// A peer client program: nats-py or nats.go.
struct Peer: Sendable, CustomTestStringConvertible {
    var name: String
    var command: @Sendable () async throws -> [String]?

    var testDescription: String { name }

    static let python = Peer(name: "nats-py") {
        TestEnvironment.python.map {
            [$0, TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/interop_peer.py").path]
        }
    }
    static let go = Peer(name: "nats.go") { try await TestEnvironment.goPeer("interop").map { [$0] } }

    /// Starts the peer in `mode`; fails (CI) or skips (developer machine) when the peer is missing.
    func start(_ url: String, _ mode: String, _ subject: String, _ arg: String) async throws -> PeerProcess {
        guard let cmd = try await command() else {
            throw TestEnvironment.Failure("\(name) peer is missing: run scripts/setup.sh")
        }
        return try await PeerProcess.start(cmd[0], Array(cmd.dropFirst()) + [url, mode, subject, arg])
    }

    var available: Bool {
        get async { ((try? await command()) ?? nil) != nil }
    }
}

struct PeerMessage: Decodable {
    var subject: String
    var reply: String?
    var data: String
    var headers: [String: HeaderValue]

    /// nats-py gives one string per header, nats.go a list.
    enum HeaderValue: Decodable, Equatable {
        case one(String)
        case many([String])
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .one(s) } else { self = .many(try c.decode([String].self)) }
        }
        var values: [String] {
            switch self {
            case .one(let s): [s]
            case .many(let a): a
            }
        }
    }

    static func parse(_ line: String) throws -> PeerMessage {
        try JSONDecoder().decode(PeerMessage.self, from: Data(line.utf8))
    }
}

let peers = [Peer.python, Peer.go]

@Suite(.timeLimit(.minutes(2))) struct InteropTests {
    @Test(arguments: peers)
    func peerReceivesOurMessagesWithHeaders(_ peer: Peer) async throws {
        try #require(TestEnvironment.shouldRun(needing: await peer.available), "\(peer.name) not installed")
        try await withServerAndClient { server, client in
            let p = try await peer.start(server.url, "sub", "interop.to.peer", "3")
            try await p.waitForLines(1)
            for i in 0..<3 {
                var h = NATSHeaders()
                h["X-From"] = "swift"
                h["X-Seq"] = "\(i)"
                try await client.publish("swift-\(i)", to: "interop.to.peer", headers: h)
            }
            let lines = try await p.waitForLines(4)
            let got = try lines.dropFirst().map(PeerMessage.parse)
            #expect(got.map(\.data) == ["swift-0", "swift-1", "swift-2"])
            #expect(got.map { $0.headers["X-Seq"]?.values } == [["0"], ["1"], ["2"]])
            #expect(got.allSatisfy { $0.headers["X-From"]?.values == ["swift"] })
            #expect(try await p.waitForExit() == 0)
        }
    }

    @Test(arguments: peers)
    func weReceiveThePeersMessagesWithHeaders(_ peer: Peer) async throws {
        try #require(TestEnvironment.shouldRun(needing: await peer.available), "\(peer.name) not installed")
        try await withServerAndClient { server, client in
            let sub = try await client.subscribe(to: "interop.from.peer")
            try await client.flush()
            let p = try await peer.start(server.url, "pub", "interop.from.peer", "5")
            #expect(try await p.waitForExit() == 0, "\(p.errorOutput)")
            let got = try await sub.collect(5)
            let prefix = peer.name == "nats-py" ? "py" : "go"
            #expect(got.map(\.string) == (0..<5).map { "\(prefix)-\($0)" })
            #expect(got.allSatisfy { $0.headers?["X-Peer"] == peer.name })
            if peer.name == "nats.go" {
                #expect(got.first?.headers?.values(for: "X-Multi") == ["one", "two"])
            }
        }
    }

    @Test(arguments: peers)
    func weRequestThePeerReplies(_ peer: Peer) async throws {
        try #require(TestEnvironment.shouldRun(needing: await peer.available), "\(peer.name) not installed")
        try await withServerAndClient { server, client in
            let p = try await peer.start(server.url, "serve", "interop.peer.svc", "3")
            try await p.waitForLines(1)
            let prefix = peer.name == "nats-py" ? "py" : "go"
            for i in 0..<3 {
                let reply = try await client.request("q\(i)", to: "interop.peer.svc", headers: ["X-Ask": "from-swift"])
                #expect(reply.string == "\(prefix):q\(i)")
                #expect(reply.headers?["X-Answered-By"] == peer.name)
                #expect(reply.headers?["X-Seen"] == "from-swift")
            }
            #expect(try await p.waitForExit() == 0)
        }
    }

    @Test(arguments: peers)
    func peerRequestsWeReply(_ peer: Peer) async throws {
        try #require(TestEnvironment.shouldRun(needing: await peer.available), "\(peer.name) not installed")
        try await withServerAndClient { server, client in
            try await client.subscribe(to: "interop.swift.svc") { m in
                var h = NATSHeaders()
                h["X-Answered-By"] = "swift"
                h["X-Seen"] = m.headers?["X-Ask"] ?? ""
                try await m.respond(Array("swift:\(m.string)".utf8), headers: h, using: client)
            }
            try await client.flush()
            let p = try await peer.start(server.url, "request", "interop.swift.svc", "hello")
            let line = try await p.waitForLines(1)
            let reply = try PeerMessage.parse(line[0])
            #expect(reply.data == "swift:hello")
            #expect(reply.headers["X-Answered-By"]?.values == ["swift"])
            let expectedAsk = peer.name == "nats-py" ? "from-py" : "from-go"
            #expect(reply.headers["X-Seen"]?.values == [expectedAsk])
        }
    }
}
