import Foundation
import NATSProtocol
import NIOCore
import NKeys
import NexAgentLink
import NexModels
import NexNode

/// Every fuzz target: a name and what it does with one input. A target must never crash, hang or grow
/// without bound on any input; errors thrown by the code under test are the expected outcome for junk.
enum FuzzTarget: String, CaseIterable {
    case protocolParser = "protocol"
    case headers
    case serverInfo = "info"
    case connectInfo = "connect"
    case controlRequests = "control"
    case agentLink = "agentlink"
    case jwt
    case xkv1

    func run(_ bytes: [UInt8]) {
        switch self {
        case .protocolParser: Self.parseProtocol(bytes)
        case .headers: _ = try? NATSHeaders.parse(ByteBuffer(bytes: bytes))
        case .serverInfo: _ = try? JSONDecoder().decode(ServerInfo.self, from: Data(bytes))
        case .connectInfo: _ = try? JSONDecoder().decode(ConnectInfo.self, from: Data(bytes))
        case .controlRequests: Self.controlRequest(bytes)
        case .agentLink: Self.agentLink(bytes)
        case .jwt: Self.jwt(bytes)
        case .xkv1: _ = try? Keys.recipient.open(bytes, from: Keys.sender.publicKey)
        }
    }

    /// Server bytes cut at every split the first byte chooses: the parser must give the same operations
    /// whatever the chunking, and end in an error or a need for more bytes, never a trap.
    private static func parseProtocol(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let input = bytes.dropFirst()
        let step = max(1, Int(first))
        var parser = ProtocolParser(maxControlLineLength: 4096, maxPayload: 1 << 20)
        var buffer = ByteBuffer()
        var offset = input.startIndex
        var whole: [String] = []
        do {
            while offset < input.endIndex {
                let end = min(input.endIndex, offset + step)
                buffer.writeBytes(input[offset..<end])
                offset = end
                while let op = try parser.next(&buffer) { whole.append("\(op)") }
                buffer.discardReadBytes()
            }
        } catch {
            return
        }
        var once = ProtocolParser(maxControlLineLength: 4096, maxPayload: 1 << 20)
        var all = ByteBuffer(bytes: input)
        var direct: [String] = []
        while let op = try? once.next(&all) { direct.append("\(op)") }
        precondition(direct == whole, "the parser's operations depend on how the bytes were split")
    }

    /// A control request as a node receives it: decoded, and a deploy checked by the node's validator
    /// (JWT, sealed environment, names, subjects, hash).
    private static func controlRequest(_ bytes: [UInt8]) {
        let data = Data(bytes)
        _ = try? JSONDecoder().decode(AuctionRequest.self, from: data)
        _ = try? JSONDecoder().decode(StopRequest.self, from: data)
        guard let deploy = try? JSONDecoder().decode(DeployRequest.self, from: data) else { return }
        var validator = DeployValidator(config: Keys.nodeConfiguration, xkey: Keys.recipient)
        validator.now = { 1_800_000_000 }
        _ = validator.validate(deploy, namespace: "default")
        // The subject policy on every subject a deploy names (the validator reaches it only past the token).
        let policy = SubjectPolicy(allowReserved: ["$SRV.PING"], namespaces: ["a": ["a.>"], "*": ["shared.>"]])
        for subject in (deploy.triggerSubjects ?? []) + [deploy.workloadName] {
            _ = policy.refusal(for: subject, namespace: "a", use: .trigger)
            _ = policy.replyRefusal(subject, namespace: "b")
        }
    }

    /// Frames read from a link as a reader would: decode, advance, repeat; a frame decoded must encode back
    /// to the same bytes.
    private static func agentLink(_ bytes: [UInt8]) {
        var rest = bytes[...]
        while true {
            guard let (frame, used) = try? LinkFrame.decode(rest) else { return }
            precondition(used > 0 && used <= rest.count, "a frame took \(used) of \(rest.count) bytes")
            switch frame {
            case .hello, .welcome, .deploy, .reply:
                // A JSON body is encoded anew (key order, spacing): the frame must survive, not its bytes.
                let again = try? LinkFrame.decode(frame.encoded()[...])
                precondition(again?.0 == frame, "a decoded \(frame.kindName) frame does not survive encoding")
            default:
                precondition(frame.encoded() == Array(rest.prefix(used)), "a decoded frame encodes differently")
            }
            rest = rest.dropFirst(used)
        }
    }

    private static func jwt(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = try? NATSJWT.decode(text)
        _ = try? NATSJWT.verify(text, now: 1_800_000_000)
    }
}

/// Fixed keys, so seeds made once keep reaching past signature and seal checks.
enum Keys {
    static let recipient = try! NKeyPair(prefix: .curve, rawSeed: [UInt8](repeating: 1, count: 32))
    static let sender = try! NKeyPair(prefix: .curve, rawSeed: [UInt8](repeating: 2, count: 32))
    static let issuer = try! NKeyPair(prefix: .account, rawSeed: [UInt8](repeating: 3, count: 32))
    static let node = try! NKeyPair(prefix: .server, rawSeed: [UInt8](repeating: 4, count: 32))

    static let nodeConfiguration: NodeConfiguration = {
        var config = NodeConfiguration()
        config.noSandbox = true
        return config
    }()
}
