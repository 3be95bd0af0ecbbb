import CNexSpawn
import Foundation
import NATS
import NexAgentLink
import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// The agent: one per workload, started by the node's sandbox driver. It connects to the node's internal
/// NATS with its own credentials, says hello (`hostint.<id>.handshake`), waits for one deploy, runs the
/// workload with the runner for its type, reports logs and the exit, and ends on undeploy or when the node
/// goes away (internal server gone, or the parent process changed).
public final class NexAgent: Sendable {
    public static let version = "0.1.0"

    /// Who the agent is and where the node is, from the environment the driver set.
    public struct Settings: Sendable {
        public var agentID: String
        public var natsURL: String
        public var nkeySeed: String
        /// The descriptor of the link to the node that carries triggers (nil: none was given).
        public var linkDescriptor: Int32?
        /// A connected socket to the internal server (in a sandbox); nil: dial `natsURL`.
        public var natsDescriptor: Int32?
        /// In a VM: the control channel, where the artifact is fetched from.
        public var controlDescriptor: Int32?

        /// Reads ``AgentEnvironment`` variables (a failure names the first one missing); in a VM, it first
        /// waits for them on the control channel, and dials the node over TCP or vsock.
        public static func fromEnvironment(_ env: [String: String]) -> Result<Settings, WorkloadStartError> {
            var env = env
            var control: Int32?
            if let user = env[AgentEnvironment.runAs] {
                guard let uid = UInt32(user) else { return .failure(WorkloadStartError("malformed user id \(user)")) }
                if case .failure(let error) = VMGuest.becomeUnprivileged(uid: uid) { return .failure(error) }
            }
            var controlChannel: Int32?
            if let address = env[AgentEnvironment.vmControl] {
                switch VMGuest.dial(address) {
                case .failure(let error): return .failure(error)
                case .success(let connected): controlChannel = connected
                }
            } else if let port = env[AgentEnvironment.controlVsockPort].flatMap({ UInt32($0) }) {
                let fd = nex_vsock_connect(2, port)
                guard fd >= 0 else {
                    return .failure(WorkloadStartError("cannot reach the node's control channel (vsock port \(port))"))
                }
                controlChannel = fd
            }
            if let fd = controlChannel {
                FileHandle.standardOutput.write(Data((VMChannel.waitingLine + "\n").utf8))
                switch VMGuest.awaitSettings(fd) {
                case .failure(let error): return .failure(error)
                case .success(let given): env.merge(given) { _, new in new }
                }
                let id = env[AgentEnvironment.agentID] ?? "?"
                FileHandle.standardOutput.write(Data("nex-agent \(id): settings received\n".utf8))
                control = fd
            }
            var values: [String] = []
            for key in [AgentEnvironment.agentID, AgentEnvironment.natsURL, AgentEnvironment.nkeySeed] {
                guard let value = env[key], !value.isEmpty else {
                    return .failure(WorkloadStartError("\(key) is not set: nex-agent is started by a Nex node"))
                }
                values.append(value)
            }
            var settings = Settings(
                agentID: values[0], natsURL: values[1], nkeySeed: values[2],
                linkDescriptor: env[AgentEnvironment.linkFD].flatMap { Int32($0) },
                natsDescriptor: env[AgentEnvironment.natsFD].flatMap { Int32($0) }, controlDescriptor: control)
            if let address = env[AgentEnvironment.natsTCP] {
                switch VMGuest.dial(address) {
                case .failure(let error): return .failure(error)
                case .success(let fd):
                    guard BlockingIO.writeAll(fd, VMChannel.natsPreamble) else {
                        return .failure(WorkloadStartError("the NATS channel at \(address) closed"))
                    }
                    settings.natsDescriptor = fd
                }
            }
            if let address = env[AgentEnvironment.linkTCP] {
                switch VMGuest.dial(address) {
                case .failure(let error): return .failure(error)
                case .success(let fd): settings.linkDescriptor = fd
                }
            }
            // In a VM the node is on the other side of vsock (the host is CID 2).
            for (key, port) in [
                (AgentEnvironment.natsVsockPort, env[AgentEnvironment.natsVsockPort]),
                (AgentEnvironment.linkVsockPort, env[AgentEnvironment.linkVsockPort]),
            ] {
                guard let port, let number = UInt32(port) else { continue }
                let fd = nex_vsock_connect(2, number)
                guard fd >= 0 else {
                    return .failure(WorkloadStartError("cannot reach the node over vsock port \(number) (\(key))"))
                }
                if key == AgentEnvironment.natsVsockPort {
                    settings.natsDescriptor = fd
                } else {
                    settings.linkDescriptor = fd
                }
            }
            return .success(settings)
        }
    }

    let settings: Settings
    let client: NATSClient
    let makeRunner: @Sendable (String) -> (any WorkloadRunner)?
    let startedAt = ContinuousClock.now
    let state = Mutex(State())
    let done = AsyncStream<String>.makeStream()
    /// A service's logs and events in the order it produced them (one publisher, so an exit never overtakes
    /// the last lines before it). A function's lines go on the link instead.
    let outbox = AsyncStream<(subject: String, body: [UInt8])>.makeStream()

    struct State {
        var runner: (any WorkloadRunner)?
        var workloadID: String?
        /// Serves the link's triggers; it gets a worker per concurrent trigger once a function is deployed.
        var linkServer: AgentLinkServer?
    }

    /// An agent with `makeRunner` choosing the runner for a workload type (nil: type not supported here).
    public init(settings: Settings, makeRunner: @escaping @Sendable (String) -> (any WorkloadRunner)?) {
        self.settings = settings
        self.makeRunner = makeRunner
        var config = NATSClient.Configuration(servers: [settings.natsURL])
        config.name = "nex-agent-\(settings.agentID)"
        config.auth = .nkey(seed: settings.nkeySeed)
        config.inboxPrefix = AgentSubjects.inboxPrefix(agent: settings.agentID)
        config.connectTimeout = .seconds(10)
        // The internal server lives and dies with the node: a few quick retries, then the agent gives up.
        config.reconnect.reconnectWait = .milliseconds(250)
        config.reconnect.maxAttemptsPerServer = 8
        if let fd = settings.natsDescriptor {
            // The node's relay is the only way to the server: when it ends, so does the agent.
            config.connectedSocket = fd
            config.allowReconnect = false
        }
        self.client = NATSClient(configuration: config)
    }

    /// Runs until undeployed or the node is gone; returns why.
    public func run() async throws -> String {
        let parent = getppid()
        try await client.connect()
        let id = settings.agentID
        try await client.subscribe(to: AgentSubjects.ping(agent: id)) { m in
            try await self.reply(m, AgentResponse(ok: true, message: self.state.withLock { $0.workloadID }))
        }
        try await client.subscribe(to: AgentSubjects.deploy(agent: id)) { m in
            try await self.reply(m, await self.deploy(m))
        }
        try await client.subscribe(to: AgentSubjects.undeploy(agent: id)) { m in
            await self.stopWorkload()
            try await self.reply(m, AgentResponse(ok: true))
            self.done.continuation.yield("undeployed")
        }
        if let fd = settings.linkDescriptor {
            let server = AgentLinkServer.serve(LinkSocket(fd: fd)) { subject, payload, traceParent in
                self.runTrigger(Trigger(subject: subject, payload: payload, traceParent: traceParent))
            } onEnd: { reason in
                self.done.continuation.yield("lost the link to the node: \(reason)")
            }
            state.withLock { $0.linkServer = server }
        }
        // Logs and events go out until the agent ends; then the rest is sent before the connection closes.
        async let relayed: Void = Self.relay(outbox.stream, through: client)
        let reason = try await withThrowingDiscardingTaskGroup { watchers in
            let events = client.events
            watchers.addTask {
                for await event in events where event == .closed {
                    self.done.continuation.yield("lost the node's internal NATS server")
                    return
                }
            }
            watchers.addTask {
                // A node killed with SIGKILL cannot say goodbye: notice the re-parenting instead.
                while getppid() == parent {
                    do { try await Task.sleep(for: .milliseconds(500)) } catch { return }  // the agent ended
                }
                self.done.continuation.yield("the node process is gone")
            }
            defer { watchers.cancelAll() }
            if let refusal = try await handshake() { return refusal }
            for await why in done.stream { return why }
            return "ended"
        }
        await stopWorkload()
        outbox.continuation.finish()
        await relayed
        await client.close()
        return reason
    }

    /// Introduces the agent to the node; the node's refusal, if it refused.
    private func handshake() async throws -> String? {
        let elapsed = ContinuousClock.now - startedAt
        let millis = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        let hello = AgentHandshake(id: settings.agentID, version: Self.version, pid: getpid(), startupMillis: millis)
        let welcome = try await client.request(
            Array(try JSONEncoder().encode(hello)), to: AgentSubjects.handshake(agent: settings.agentID),
            timeout: .seconds(10))
        let answer: AgentResponse
        do { answer = try JSONDecoder().decode(AgentResponse.self, from: Data(welcome.bytes)) } catch {
            return "the node answered the handshake with something else than an agent response: \(error)"
        }
        return answer.ok ? nil : "the node refused the handshake: \(answer.message ?? "no reason given")"
    }

    /// Publishes the workload's logs and events in order. A failed publish is reported on stderr (which the
    /// node keeps in its log), the first one and then every hundredth, with the count so far.
    static func relay(
        _ outbox: AsyncStream<(subject: String, body: [UInt8])>, through client: NATSClient
    ) async {
        var failed = 0
        for await (subject, body) in outbox {
            do { try await client.publish(body, to: subject) } catch {
                failed += 1
                if failed % 100 == 1 {
                    let line = "nex-agent: \(failed) log or event message(s) not sent; last to \(subject): \(error)\n"
                    FileHandle.standardError.write(Data(line.utf8))
                }
            }
        }
    }

    func deploy(_ m: NATSMessage) async -> AgentResponse {
        let request: AgentDeployRequest
        do { request = try JSONDecoder().decode(AgentDeployRequest.self, from: Data(m.bytes)) } catch {
            return AgentResponse(ok: false, message: "malformed deploy request: \(error)")
        }
        guard let runner = makeRunner(request.type) else {
            return AgentResponse(ok: false, message: "this agent cannot run \(request.type) workloads")
        }
        let taken = state.withLock { s -> Bool in
            guard s.runner == nil else { return false }
            s.runner = runner
            s.workloadID = request.workloadID
            return true
        }
        guard taken else { return AgentResponse(ok: false, message: "this agent already runs a workload") }
        let id = settings.agentID
        let outbox = self.outbox.continuation
        // A function's lines go on the link, from the thread that logged: no hand-off to a task, no hop through
        // the internal server, and a trigger's lines reach the node before its result. A service's stay with
        // its events on NATS, so its last lines come before the news that it exited.
        let link = runner is any FunctionRunner ? state.withLock { $0.linkServer } : nil
        let output = WorkloadOutput(
            log: { text, level in
                if let link, link.sendLog(level: level, text: text) { return }
                let entry = LogEntry(text: text, level: level, id: request.workloadID)
                guard let body = try? JSONEncoder().encode(entry) else { return }
                outbox.yield((AgentSubjects.logs(agent: id), Array(body)))
            },
            exited: { code, message in
                let event = WorkloadExited(workloadID: request.workloadID, code: code, message: message)
                guard let body = try? JSONEncoder().encode(event) else { return }
                outbox.yield((AgentSubjects.event(agent: id, type: AgentEventType.workloadExited), Array(body)))
            },
            hostCall: { [client] service, method, args, traceParent in
                let subject = AgentSubjects.hostCall(
                    agent: id, namespace: request.namespace, workload: request.workloadName, service: service,
                    method: method)
                let headers: NATSHeaders? = traceParent.map { [TraceParent.headerName: $0] }
                return try Self.blockingRequest(client, subject: subject, body: Array(args.utf8), headers: headers)
            })
        do {
            if let control = settings.controlDescriptor {
                try await Self.onThread { try VMGuest.fetchArtifact(control, to: request.artifactPath) }
            }
            try await runner.start(request, output: output)
            if runner is any FunctionRunner {
                state.withLock { $0.linkServer }?.growWorkers(to: request.maxConcurrency ?? 1)
            }
            return AgentResponse(ok: true)
        } catch {
            state.withLock { $0.runner = nil }
            return AgentResponse(ok: false, message: "\(error)")
        }
    }

    /// Runs the function for one trigger, on a link worker's thread: the reply, or the error text.
    func runTrigger(_ trigger: Trigger) -> AgentLinkServer.Outcome {
        guard let runner = state.withLock({ $0.runner }) as? any FunctionRunner else {
            return (false, 0, Array("this workload is not a function".utf8))
        }
        let result = runner.run(trigger)
        if let error = result.error { return (false, result.elapsedNanos, Array(error.utf8)) }
        return (true, result.elapsedNanos, result.reply ?? [])
    }

    /// Runs blocking I/O on a thread of its own (not on the cooperative pool).
    static func onThread(_ work: @escaping @Sendable () throws -> Void) async throws {
        let result: Result<Void, any Error> = await withCheckedContinuation { continuation in
            startThread(named: "nex-agent-io") { continuation.resume(returning: Result { try work() }) }
        }
        try result.get()
    }

    /// A request made from an engine's own thread (V8 calls host services synchronously). The node answers
    /// `{"result": …}` or `{"error": "…"}`; the wait is bounded so a function's limits still hold.
    static func blockingRequest(_ client: NATSClient, subject: String, body: [UInt8], headers: NATSHeaders? = nil)
        throws -> String
    {
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<[UInt8], any Error>>(.failure(WorkloadStartError("host call timed out")))
        Task {
            do {
                let reply = try await client.request(body, to: subject, headers: headers, timeout: .seconds(6))
                outcome.withLock { $0 = .success(reply.bytes) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        _ = done.wait(timeout: .now() + 7)
        let bytes = try outcome.withLock { $0 }.get()
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw WorkloadStartError("malformed host service answer")
        }
        if let error = object["error"] as? String { throw WorkloadStartError(error) }
        let result = object["result"] ?? NSNull()
        let data = try JSONSerialization.data(withJSONObject: result, options: [.fragmentsAllowed])
        return String(decoding: data, as: UTF8.self)
    }

    func stopWorkload() async {
        let runner = state.withLock { s in
            defer { s.runner = nil }
            return s.runner
        }
        await runner?.stop(grace: .seconds(5))
    }

    func reply(_ m: NATSMessage, _ response: AgentResponse) async throws {
        guard let to = m.replyTo else { return }
        try await client.publish(Array(try JSONEncoder().encode(response)), to: to)
    }
}
