import Crypto
import Foundation
import NATS
import NATSTestSupport
import NKeys
import NexControlClient
import NexModels
import Testing

/// A stand-in node that answers the control API as the contract says and checks deploys as a node must.
struct ContractNode: Sendable {
    let id = NKeyPair.generate(.server)
    let xkey = NKeyPair.generate(.curve)
    let seenEnvironment = Locked<[String: String]>([:])

    func ping() -> PingResponse {
        PingResponse(
            nodeID: id.publicKey, version: "0.1.0", uptime: "1s", targetXkey: xkey.publicKey,
            tags: ["nex.os": "linux"], runningMachines: 0)
    }

    func serve(on client: NATSClient) async throws {
        let encoder = JSONEncoder()
        try await client.subscribe(to: NexSubjects.ping) { m in
            try await m.respond(Array(try encoder.encode(Envelope(kind: ReplyKind.ping, data: ping()))), using: client)
        }
        try await client.subscribe(to: NexSubjects.ping(node: id.publicKey)) { m in
            try await m.respond(Array(try encoder.encode(Envelope(kind: ReplyKind.ping, data: ping()))), using: client)
        }
        try await client.subscribe(to: NexSubjects.deploy(namespace: "default", node: id.publicKey)) { m in
            let reply: Envelope<RunResponse>
            do {
                let request = try JSONDecoder().decode(DeployRequest.self, from: Data(m.bytes))
                let claims = try NATSJWT.verify(request.workloadJWT)
                guard claims.nats["name"]?.stringValue == request.workloadName,
                    request.workloadName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
                else { throw NexError(.invalidRequest, "invalid workload name \(request.workloadName)") }
                guard claims.nats["hash"]?.stringValue == request.hash else {
                    throw NexError(.invalidRequest, "hash does not match the signed hash")
                }
                let sealed = try #require(Data(base64Encoded: request.environment ?? ""))
                let env = try xkey.open(Array(sealed), from: request.senderPublicKey)
                seenEnvironment.withLock {
                    $0 = (try? JSONDecoder().decode([String: String].self, from: Data(env))) ?? [:]
                }
                reply = Envelope(
                    kind: ReplyKind.run,
                    data: RunResponse(id: "W1", issuer: claims.issuer, name: request.workloadName, started: true))
            } catch {
                reply = Envelope(kind: ReplyKind.run, error: "\(error)")
            }
            try await m.respond(Array(try encoder.encode(reply)), using: client)
        }
        try await client.subscribe(to: NexSubjects.stop(namespace: "default", node: id.publicKey)) { m in
            let request = try JSONDecoder().decode(StopRequest.self, from: Data(m.bytes))
            let claims = try NATSJWT.verify(request.workloadJWT)
            let ok = claims.subject == request.workloadID
            let reply = Envelope(
                kind: ReplyKind.stop, data: StopResponse(id: request.workloadID, issuer: claims.issuer, stopped: ok))
            try await m.respond(Array(try encoder.encode(reply)), using: client)
        }
        try await client.flush()
    }
}

@Suite(.timeLimit(.minutes(1))) struct NexControlClientTests {
    @Test func discoversNodesAndDeploysAsTheContractSays() async throws {
        try await NATSServer.with(.init(jetStream: true)) { server in
            try await withClient([server.url]) { nodeSide in
                let nodeA = ContractNode()
                let nodeB = ContractNode()
                try await nodeA.serve(on: nodeSide)
                try await nodeB.serve(on: nodeSide)
                try await withClient([server.url]) { client in
                    let nex = NexControlClient(client: client)
                    // Scatter-gather ends after a fixed window: wait for the round that has both answers.
                    let nodes = try await eventuallyValue("both nodes answer $NEX.PING") {
                        let nodes = try await nex.ping()
                        return nodes.count == 2 ? nodes : nil
                    }
                    #expect(Set(nodes.map(\.nodeID)) == [nodeA.id.publicKey, nodeB.id.publicKey])
                    let one = try await nex.ping(node: nodeA.id.publicKey)
                    #expect(one.targetXkey == nodeA.xkey.publicKey)

                    // Upload, seal, sign, deploy.
                    let artifact = server.directory.appendingPathComponent("echo").path
                    try Data("#!/bin/true".utf8).write(to: URL(fileURLWithPath: artifact))
                    let (location, hash) = try await nex.uploadArtifact(file: artifact, key: "echo")
                    let expectedHash = SHA256.hash(data: Data("#!/bin/true".utf8)).map { String(format: "%02x", $0) }
                        .joined()
                    #expect(hash == expectedHash && location.description == "nats://NEXCLIFILES/echo")
                    let issuer = NKeyPair.generate(.account)
                    let publisher = NKeyPair.generate(.curve)
                    let request = try NexControlClient.makeDeployRequest(
                        name: "echoservice", type: "native", location: location, hash: hash,
                        environment: ["NATS_URL": server.url], issuer: issuer, publisher: publisher,
                        targetNode: one.nodeID, targetXkey: one.targetXkey)
                    let run = try await nex.deploy(request, to: one.nodeID)
                    #expect(run.started && run.name == "echoservice" && run.issuer == issuer.publicKey)
                    #expect(nodeA.seenEnvironment.value == ["NATS_URL": server.url])

                    // A refusal comes back verbatim.
                    var bad = request
                    bad.hash = String(repeating: "0", count: 64)
                    let refused = await #expect(throws: NexError.self) {
                        try await nex.deploy(bad, to: one.nodeID)
                    }
                    #expect(refused?.code == .refused && refused?.message.contains("signed hash") == true)

                    let stopped = try await nex.stop(workloadID: "W1", node: one.nodeID, issuer: issuer)
                    #expect(stopped.stopped && stopped.issuer == issuer.publicKey)

                    let none = await #expect(throws: NexError.self) { try await nex.info(node: "NNOSUCHNODE") }
                    #expect(none?.code == .noNode)
                    #expect(try await nex.workloadPing().isEmpty)
                }
            }
        }
    }

    @Test func deployRequestsAreCheckedBeforeSending() throws {
        let location = WorkloadLocation(bucket: "B", key: "k")
        #expect(throws: NexError.self) {
            try NexControlClient.makeDeployRequest(
                name: "x", type: "native", location: location, hash: "h", issuer: NKeyPair.generate(.user),
                publisher: NKeyPair.generate(.curve), targetNode: "N", targetXkey: NKeyPair.generate(.curve).publicKey)
        }
    }

    @Test func followsEventsAndLogs() async throws {
        try await withServerAndClient { _, client in
            let nex = NexControlClient(client: client)
            var events = try await nex.events().makeAsyncIterator()
            var logs = try await nex.logs(workloadName: "echo").makeAsyncIterator()
            try await client.flush()
            let event = CloudEvent(
                id: "1", source: "N1", type: NexEventType.workloadDeployed,
                data: WorkloadEvent(
                    code: 0, message: "ok", workloadID: "W1", workloadName: "echo", essential: false, totalBytes: 10))
            try await client.publish(
                Array(try JSONEncoder().encode(event)), to: NexSubjects.event(namespace: "default", type: event.type))
            try await client.publish(
                Array(try JSONEncoder().encode(LogEntry(text: "hello", level: LogEntry.info, id: "W1"))),
                to: NexSubjects.logs(namespace: "default", node: "N1", workloadName: "echo", workloadID: "W1"))
            let got = try #require(try await events.next())
            #expect(got.type == "workload_deployed" && got.namespace == "default")
            #expect(try got.decode(WorkloadEvent.self).data.workloadID == "W1")
            let line = try #require(try await logs.next())
            #expect(line.entry.text == "hello" && line.node == "N1" && line.workloadID == "W1")
        }
    }
}
