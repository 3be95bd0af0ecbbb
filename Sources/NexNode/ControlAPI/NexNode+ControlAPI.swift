import Foundation
import NATS
import NATSJetStream
import NKeys
import NexControlClient
import NexModels
import NexProcess
import Tracing

/// The control API handlers (wire contract §1).
extension NexNode {
    /// The namespace token of `$NEX.<OP>.<ns>.…`.
    static func namespace(of subject: String) -> String {
        let parts = subject.split(separator: ".")
        return parts.count > 2 ? String(parts[2]) : "default"
    }

    func pingResponse() async -> PingResponse {
        PingResponse(
            nodeID: nodeID, nexus: tags["nexus"], version: Self.version, uptime: uptime, targetXkey: xkey.publicKey,
            tags: tags, runningMachines: await runtime?.manager.count ?? 0)
    }

    /// Answers only when the node matches every field of the auction.
    /// An empty body matches every node; a body that is not an auction request is answered with the error
    /// (it used to count as match-all).
    func auction(_ m: NATSMessage) async throws -> [UInt8]? {
        var request = AuctionRequest()
        if !m.bytes.isEmpty {
            do { request = try JSONDecoder().decode(AuctionRequest.self, from: Data(m.bytes)) } catch {
                return try encode(ReplyKind.auction, error: "malformed auction request: \(Self.describe(error))")
            }
        }
        let tags = self.tags
        if let os = request.os, os.lowercased() != HostFacts.os { return nil }
        if let arch = request.arch, arch.lowercased() != HostFacts.arch { return nil }
        if let sandboxed = request.sandboxed, sandboxed == config.noSandbox { return nil }
        for (k, v) in request.tags ?? [:] where tags[k]?.lowercased() != v.lowercased() { return nil }
        for t in request.workloadTypes ?? [] {
            guard let type = WorkloadType(rawValue: t), config.workloadTypes.contains(type) else { return nil }
        }
        if isLameDuck || runtime == nil { return nil }
        return try encode(ReplyKind.auction, await pingResponse())
    }

    /// `$NEX.WPING.<ns>[.<id or name>]`: answers only when a workload matches.
    func workloadPing(_ m: NATSMessage) async throws -> [UInt8]? {
        let parts = m.subject.split(separator: ".").map(String.init)
        guard parts.count == 3 || parts.count == 4 else { return nil }
        let filter = parts.count == 4 ? parts[3] : nil
        let matches = (await runtime?.manager.all(in: parts[2]) ?? []).filter {
            filter == nil || $0.id == filter || $0.record.name == filter
        }
        guard !matches.isEmpty else { return nil }
        return try encode(
            ReplyKind.ping,
            WorkloadPingResponse(
                nodeID: nodeID, targetXkey: xkey.publicKey, version: Self.version, tags: tags, uptime: uptime,
                runningMachines: matches.map {
                    MachineSummary(
                        id: $0.id, namespace: $0.record.namespace, name: $0.record.name, type: $0.record.type)
                }))
    }

    func infoResponse(_ m: NATSMessage) async -> InfoResponse {
        let namespace = Self.namespace(of: m.subject)
        let workloads = await runtime?.manager.all(in: namespace) ?? []
        // Every workload's trigger counts at once: INFO waits at most one count timeout for them all.
        let triggers = await withTaskGroup(of: (Int, [TriggerStatus]?).self) { group in
            for (index, w) in workloads.enumerated() {
                group.addTask { (index, await self.triggerStatuses(w.record)) }
            }
            var all = [[TriggerStatus]?](repeating: nil, count: workloads.count)
            for await (index, statuses) in group { all[index] = statuses }
            return all
        }
        let machines = zip(workloads, triggers).map { w, triggers in
            let up = GoDuration.format(nanoseconds: Int64(Date().timeIntervalSince(w.since) * 1e9))
            let running = if case .running = w.status { true } else { false }
            return MachineInfo(
                id: w.status.agent ?? w.id, healthy: running && w.healthy, uptime: up, namespace: w.record.namespace,
                workload: WorkloadDescription(
                    id: w.id, name: w.record.name, description: w.record.request.description,
                    essential: w.record.essential, hash: w.record.hash, runtime: up, uptime: up, type: w.record.type,
                    issuer: w.issuer, triggers: triggers))
        }
        return InfoResponse(
            availableAgents: await runtime?.pool.available ?? 0,
            allowDuplicateWorkloads: config.allowDuplicateWorkloads,
            machines: machines, memory: HostFacts.memory(), publicXkey: xkey.publicKey,
            supportedWorkloadTypes: config.workloadTypes.map(\.rawValue), tags: tags, uptime: uptime,
            version: Self.version)
    }

    func deploy(_ m: NATSMessage) async throws -> [UInt8] {
        // The pipeline's steps are children of this span (through the task's context), and it continues
        // the deployer's trace when the request carries a `traceparent`.
        let span = tracing.start("nex.deploy", parent: tracing.context(from: m.headers), kind: .server)
        defer { span.end() }
        let request: DeployRequest
        do { request = try JSONDecoder().decode(DeployRequest.self, from: Data(m.bytes)) } catch {
            metrics.deploy(accepted: false)
            span.setStatus(.init(code: .error, message: "malformed deploy request"))
            return try encode(ReplyKind.run, error: "malformed deploy request: \(Self.describe(error))")
        }
        let namespace = Self.namespace(of: m.subject)
        span.attributes["nex.namespace"] = namespace
        span.attributes["nex.workload"] = request.workloadName
        let result = await ServiceContext.withValue(span.context) {
            await deploy(request, namespace: namespace, config: config)
        }
        switch result {
        case .success(let response):
            metrics.deploy(accepted: true)
            span.attributes["nex.workload_id"] = response.id
            return try encode(ReplyKind.run, response)
        case .failure(let refusal):
            metrics.deploy(accepted: false)
            span.setStatus(.init(code: .error, message: refusal.message))
            logger.info(
                "deploy refused", metadata: ["nex.workload": "\(request.workloadName)", "reason": "\(refusal)"])
            return try encode(ReplyKind.run, error: refusal.message)
        }
    }

    /// The deploy pipeline: checks, duplicate and limit policy, verified download, record, hand-off to an
    /// agent. `persist` false: not recorded (autostart workloads come from the configuration at every start).
    func deploy(_ request: DeployRequest, namespace: String, config: NodeConfiguration, persist: Bool = true) async
        -> Result<RunResponse, NexError>
    {
        var validator = makeValidator(config: config)
        validator.lameDuck = isLameDuck
        let valid: ValidatedDeploy
        switch validator.validate(request, namespace: namespace) {
        case .failure(let refusal): return .failure(refusal)
        case .success(let v): valid = v
        }
        guard let runtime else {
            let problem = state.withLock { $0.runtimeProblem } ?? "the node is not running"
            return .failure(NexError(.unavailable, "no agent available: \(problem)"))
        }
        let reservation: Reservation
        switch await runtime.manager.reserve(
            name: request.workloadName, namespace: namespace, replacing: request.replaces, issuer: valid.claims.issuer)
        {
        case .failure(let refusal): return .failure(refusal)
        case .success(let r): reservation = r
        }
        let workloadID = UUID().uuidString.lowercased()
        if request.location.isImage {
            return await deployImage(
                valid, workloadID: workloadID, namespace: namespace, reservation: reservation, runtime: runtime,
                persist: persist && config.persistWorkloads)
        }
        let artifact: ArtifactFetcher.Artifact
        let download = tracing.start("nex.deploy.download", parent: ServiceContext.current ?? .topLevel)
        do {
            artifact = try await ArtifactFetcher(
                client: client, directory: home + "/artifacts", logger: logger,
                cacheLimitBytes: Int64(config.ociCacheLimitMB) << 20
            ).fetch(
                request.location, expectedHash: valid.hash, workloadID: workloadID,
                maxBytes: config.nodeLimits.maxWorkloadBytes)
            download.attributes["nex.artifact.bytes"] = artifact.size
            download.end()
        } catch {
            download.setStatus(.init(code: .error, message: "\(error)"))
            download.end()
            await runtime.manager.release(reservation)
            return .failure(error)
        }
        let record = WorkloadRecord(
            id: workloadID, namespace: namespace, request: request, hash: valid.hash, acceptedAt: Date(),
            totalBytes: artifact.size, retryCount: request.retryCount ?? 0)
        let start = tracing.start("nex.deploy.start", parent: ServiceContext.current ?? .topLevel)
        let result = await runtime.manager.start(
            valid, record: record, reservation: reservation, artifactPath: artifact.path,
            persist: persist && config.persistWorkloads)
        if case .failure(let refusal) = result { start.setStatus(.init(code: .error, message: refusal.message)) }
        start.end()
        if case .failure = result { await BlockingIO.remove(artifact.path, what: "a refused artifact", logger: logger) }
        return result
    }

    /// The checks of a deploy on this node: its configuration, its servers and its host services' egress.
    func makeValidator(config: NodeConfiguration) -> DeployValidator {
        var validator = DeployValidator(config: config, xkey: xkey)
        validator.sandboxServers =
            config.noSandbox ? nil : SandboxServerPolicy(nodeServers: client.configuration.servers, config: config)
        validator.hostServicesEgress = runtime?.manager.hostServices.deployEgress
        validator.subjectRefused = { [metrics] in metrics.subjectRefused($0) }
        return validator
    }

    func stopWorkload(_ m: NATSMessage) async throws -> [UInt8] {
        let request: StopRequest
        do { request = try JSONDecoder().decode(StopRequest.self, from: Data(m.bytes)) } catch {
            return try encode(ReplyKind.stop, error: "malformed stop request: \(Self.describe(error))")
        }
        guard let runtime else { return try encode(ReplyKind.stop, error: "no such workload") }
        switch await runtime.manager.stop(request, namespace: Self.namespace(of: m.subject)) {
        case .success(let response): return try encode(ReplyKind.stop, response)
        case .failure(let refusal): return try encode(ReplyKind.stop, error: refusal.message)
        }
    }

    /// Deploys the config's `autostart` workloads through the same pipeline as any deploy. The node signs
    /// them with a key of its own and seals their environment to itself, so plaintext never leaves the node.
    func autostart() async {
        guard let workloads = config.autostart?.workloads, !workloads.isEmpty else { return }
        let issuer = NKeyPair.generate(.account)
        let publisher = NKeyPair.generate(.curve)
        var trusted = config
        trusted.validIssuers = []
        for w in workloads {
            let namespace = w.namespace ?? "default"
            do {
                guard let location = WorkloadLocation(url: w.location) else {
                    throw NexError(
                        .invalidRequest, "location \(w.location) is not nats://BUCKET/key or oci://REGISTRY/REPO")
                }
                guard !location.isImage || w.hash != nil else {
                    throw NexError(.invalidRequest, "an oci:// autostart workload needs its hash: the image's digest")
                }
                var hash = w.hash
                if hash == nil {
                    let info = try await JetStreamContext(client: client).objectStore(location.bucket).info(
                        location.key)
                    hash = NexControlClient.hexSHA256(fromDigest: info?.digest)
                }
                guard let hash else { throw NexError(.integrity, "no hash given and none found for \(w.location)") }
                let request = try NexControlClient.makeDeployRequest(
                    name: w.name, type: w.type, location: location, hash: hash, environment: w.environment ?? [:],
                    issuer: issuer, publisher: publisher, targetNode: nodeID, targetXkey: xkey.publicKey,
                    triggerSubjects: w.triggerSubjects ?? [], argv: w.argv ?? [], essential: w.essential ?? false,
                    description: w.description)
                switch await deploy(request, namespace: namespace, config: trusted, persist: false) {
                case .success(let r):
                    logger.info("autostarted", metadata: ["nex.workload": "\(w.name)", "nex.workload_id": "\(r.id)"])
                case .failure(let refusal): throw refusal
                }
            } catch {
                logger.error("autostart failed", metadata: ["nex.workload": "\(w.name)", "error": "\(error)"])
            }
        }
    }
}
