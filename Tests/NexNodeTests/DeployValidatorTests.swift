import Foundation
import NKeys
import NexControlClient
import NexModels
import Testing

@testable import NexNode

@Suite struct DeployValidatorTests {
    let nodeXkey = NKeyPair.generate(.curve)
    let issuer = NKeyPair.generate(.account)
    let publisher = NKeyPair.generate(.curve)
    let hash = String(repeating: "ab", count: 32)

    func validator(_ configure: (inout NodeConfiguration) -> Void = { _ in }) -> DeployValidator {
        var config = NodeConfiguration()
        config.workloadTypes = [.native, .v8]
        configure(&config)
        return DeployValidator(config: config, xkey: nodeXkey)
    }

    func request(
        name: String = "echoservice", type: String = "native", triggers: [String] = [],
        env: [String: String] = ["A": "1"],
        sealTo: String? = nil, issuer: NKeyPair? = nil
    ) throws -> DeployRequest {
        try NexControlClient.makeDeployRequest(
            name: name, type: type, location: WorkloadLocation(bucket: "B", key: "k"), hash: hash, environment: env,
            issuer: issuer ?? self.issuer, publisher: publisher, targetNode: "N",
            targetXkey: sealTo ?? nodeXkey.publicKey,
            triggerSubjects: triggers)
    }

    func refusal(_ v: DeployValidator, _ r: DeployRequest) -> String? {
        if case .failure(let f) = v.validate(r, namespace: "default") { return f.message }
        return nil
    }

    @Test func acceptsAWellFormedDeploy() throws {
        guard case .success(let ok) = validator().validate(try request(), namespace: "default") else {
            Issue.record("refused")
            return
        }
        #expect(ok.environment == ["A": "1"] && ok.hash == hash && ok.claims.issuer == issuer.publicKey)
    }

    @Test func acceptsTheGoClientsDeployToken() throws {
        // Go clients send "hash": null; the signed hash counts.
        let go = try JSONDecoder().decode(
            GoVectors.self,
            from: Data(
                contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                    .appendingPathComponent("../NexModelsTests/Golden/go_nex0x_vectors.json")))
        var r = DeployRequest(
            location: WorkloadLocation(bucket: "NEXCLIFILES", key: "echoservice"), senderPublicKey: go.sender_public,
            targetNode: "N", workloadName: "echoservice", workloadJWT: go.deploy_jwt, type: "native")
        r.environment = go.sealed_b64
        var v = DeployValidator(config: NodeConfiguration(), xkey: try NKeyPair(seed: go.recipient_seed))
        v.now = { 1_795_254_300 }
        guard case .success(let ok) = v.validate(r, namespace: "default") else {
            Issue.record("the Go deploy was refused: \(v.validate(r, namespace: "default"))")
            return
        }
        #expect(ok.environment == ["NATS_URL": "nats://127.0.0.1:4222"])
        #expect(ok.hash == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    }

    /// Each refusal carries the code of its kind, not only its text.
    @Test func refusalsCarryTheirCode() throws {
        func code(_ v: DeployValidator, _ r: DeployRequest) -> NexError.Code? {
            if case .failure(let f) = v.validate(r, namespace: "default") { return f.code }
            return nil
        }
        let v = validator { $0.validIssuers = [NKeyPair.generate(.account).publicKey] }
        #expect(code(validator(), try request(type: "wasm", triggers: ["a"])) == .unsupported)
        #expect(code(validator(), try request(type: "python")) == .unsupported)
        #expect(code(validator(), try request(type: "v8", triggers: ["$SYS.x"])) == .unauthorized)
        #expect(code(v, try request()) == .unauthorized)
        #expect(code(validator(), try request(sealTo: NKeyPair.generate(.curve).publicKey)) == .invalidRequest)
        var mismatched = try request()
        mismatched.hash = String(repeating: "cd", count: 32)
        #expect(code(validator(), mismatched) == .integrity)
        var lameDuck = validator()
        lameDuck.lameDuck = true
        #expect(code(lameDuck, try request()) == .unavailable)
    }

    @Test func refusalsOfScenarioTen() throws {
        let v = validator { $0.denyTriggerSubjects = ["internal.>"] }
        #expect(refusal(v, try request(type: "wasm", triggers: ["a"]))?.contains("not supported") == true)
        for denied in ["$SYS.>", "$NEX.PING", "$JS.API.INFO", "internal.x", ">", "$SYS.*"] {
            #expect(
                refusal(v, try request(type: "v8", triggers: [denied]))?.contains("not allowed") == true, "\(denied)")
        }
        #expect(refusal(v, try request(sealTo: NKeyPair.generate(.curve).publicKey))?.contains("cannot open") == true)
        #expect(refusal(v, try request(name: "echo service"))?.contains("invalid workload name") == true)
        var mismatched = try request()
        mismatched.hash = String(repeating: "cd", count: 32)
        #expect(refusal(v, mismatched)?.contains("does not match the signed hash") == true)
        var renamed = try request()
        renamed.workloadName = "other"
        #expect(refusal(v, renamed)?.contains("does not match the signed name") == true)
        var tampered = try request()
        tampered.workloadJWT = try request(name: "x").workloadJWT.replacingOccurrences(
            of: ".", with: ".A", options: [], range: nil)
        #expect(refusal(v, tampered)?.contains("invalid workload JWT") == true)
        #expect(refusal(v, try request(type: "v8", triggers: []))?.contains("trigger subject") == true)
    }

    @Test func validIssuersAndLameDuck() throws {
        let allowed = NKeyPair.generate(.account)
        var v = validator { $0.validIssuers = [allowed.publicKey] }
        #expect(refusal(v, try request())?.contains("not a valid issuer") == true)
        if case .failure = v.validate(try request(issuer: allowed), namespace: "default") {
            Issue.record("allowed issuer refused")
        }
        v.lameDuck = true
        #expect(refusal(v, try request(issuer: allowed))?.contains("lame duck") == true)
    }
}

struct GoVectors: Decodable {
    var deploy_jwt: String
    var recipient_seed: String
    var sender_public: String
    var sealed_b64: String
}
