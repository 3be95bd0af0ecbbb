import CNexSpawn
import Foundation
import NexAgentLink
import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// The agent: one per workload, started by the node's sandbox driver with one link to the node and nothing
/// else. It says hello on the link, waits for one deploy, runs the workload with the runner for its type,
/// sends the workload's logs and exit, and ends on stop or when the node goes away (the link closed, or the
/// parent process changed).
public final class NexAgent: Sendable {
    public static let version = "0.1.0"

    /// Who the agent is and where its link is, from the environment the driver set.
    public struct Settings: Sendable {
        public var agentID: String
        /// The agent's end of its link to the node.
        public var linkDescriptor: Int32
        /// In a VM: the control channel, where the artifact is fetched from.
        public var controlDescriptor: Int32?
        /// In a VM: whether `/init` started the agent in a container image's root (a VM's root file system
        /// made before images ran in VMs does not).
        public var inImageRoot = false

        /// Reads ``AgentEnvironment`` variables (a failure names the first one missing); in a VM, it first
        /// waits for them on the control channel, and dials the node's link over TCP or vsock.
        public static func fromEnvironment(_ env: [String: String]) -> Result<Settings, WorkloadStartError> {
            var env = env
            var control: Int32?
            if let user = env[AgentEnvironment.runAs] {
                // UID, or UID:GID (an image's user); a lone UID is its own group.
                let ids = user.split(separator: ":", omittingEmptySubsequences: false).map { UInt32($0) }
                guard let uid = ids.first ?? nil, ids.count <= 2, let gid = ids.count == 2 ? ids[1] : uid else {
                    return .failure(WorkloadStartError("malformed user \(user) (UID or UID:GID)"))
                }
                if case .failure(let error) = VMGuest.becomeUnprivileged(uid: uid, gid: gid) { return .failure(error) }
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
            guard let agentID = env[AgentEnvironment.agentID], !agentID.isEmpty else {
                return .failure(
                    WorkloadStartError("\(AgentEnvironment.agentID) is not set: nex-agent is started by a Nex node"))
            }
            let link: Int32
            if let fd = env[AgentEnvironment.linkFD].flatMap({ Int32($0) }) {
                link = fd
            } else if let address = env[AgentEnvironment.linkTCP] {
                switch VMGuest.dial(address) {
                case .failure(let error): return .failure(error)
                case .success(let fd): link = fd
                }
            } else if let port = env[AgentEnvironment.linkVsockPort].flatMap({ UInt32($0) }) {
                // In a VM the node is on the other side of vsock (the host is CID 2).
                let fd = nex_vsock_connect(2, port)
                guard fd >= 0 else {
                    return .failure(WorkloadStartError("cannot reach the node's link over vsock port \(port)"))
                }
                link = fd
            } else {
                return .failure(
                    WorkloadStartError(
                        "no link to the node (\(AgentEnvironment.linkFD), \(AgentEnvironment.linkTCP) or "
                            + "\(AgentEnvironment.linkVsockPort)): nex-agent is started by a Nex node"))
            }
            var settings = Settings(agentID: agentID, linkDescriptor: link, controlDescriptor: control)
            settings.inImageRoot = env[AgentEnvironment.inImage] == "1"
            return .success(settings)
        }
    }

    let settings: Settings
    let makeRunner: @Sendable (String) -> (any WorkloadRunner)?
    let startedAt = ContinuousClock.now
    let state = Mutex(State())
    /// Why the agent ends: the first reason given wins.
    let done = AsyncStream<String>.makeStream()

    struct State {
        var runner: (any WorkloadRunner)?
        var workloadID: String?
    }

    /// How long a host call waits for the node's answer, so a function's limits still hold. Above the node's
    /// own deadline (5 s per call, after opening the workload's host-services connection the first time).
    static let hostCallTimeout: Duration = .seconds(10)

    /// An agent with `makeRunner` choosing the runner for a workload type (nil: type not supported here).
    public init(settings: Settings, makeRunner: @escaping @Sendable (String) -> (any WorkloadRunner)?) {
        self.settings = settings
        self.makeRunner = makeRunner
    }

    /// Runs until stopped or the node is gone; returns why.
    public func run() async -> String {
        let parent = getppid()
        let (controls, control) = AsyncStream<LinkFrame>.makeStream()
        let link = AgentLinkServer.serve(LinkSocket(fd: settings.linkDescriptor)) { subject, payload, trace, context in
            self.runTrigger(Trigger(subject: subject, payload: payload, traceParent: trace, context: context))
        } control: { frame in
            control.yield(frame)
        } onEnd: { reason in
            self.done.continuation.yield("lost the link to the node: \(reason)")
        }
        let reason = await withDiscardingTaskGroup { tasks in
            tasks.addTask {
                for await frame in controls { await self.handle(frame, link: link) }
            }
            tasks.addTask {
                // A node killed with SIGKILL cannot say goodbye: notice the re-parenting instead.
                while getppid() == parent {
                    do { try await Task.sleep(for: .milliseconds(500)) } catch { return }  // the agent ended
                }
                self.done.continuation.yield("the node process is gone")
            }
            defer { tasks.cancelAll() }
            link.send(.hello(hello()))
            for await why in done.stream { return why }
            return "ended"
        }
        control.finish()
        await stopWorkload()
        // The stop's reply and the workload's last lines go out before the process does (at most 2 s).
        _ = await BlockingIO.run { link.waitUntilSent(timeout: .seconds(2)) }
        return reason
    }

    /// The agent's first words.
    private func hello() -> AgentHandshake {
        let elapsed = ContinuousClock.now - startedAt
        let millis = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return AgentHandshake(
            id: settings.agentID, version: Self.version, pid: getpid(), startupMillis: millis,
            protocolVersion: LinkFrame.protocolVersion)
    }

    /// One of the node's control frames, in the order they came.
    private func handle(_ frame: LinkFrame, link: AgentLinkServer) async {
        switch frame {
        case .welcome(let answer):
            if !answer.ok {
                done.continuation.yield("the node refused the agent: \(answer.message ?? "no reason given")")
            }
        case .deploy(let id, let request):
            link.send(.reply(id: id, await deploy(request, link: link)))
        case .stop(let id):
            await stopWorkload()
            link.send(.reply(id: id, AgentResponse(ok: true)))
            done.continuation.yield("stopped")
        case .heartbeat(let id):
            link.send(.reply(id: id, AgentResponse(ok: true, message: state.withLock { $0.workloadID })))
        default:
            break  // the link passes on control frames only
        }
    }

    func deploy(_ request: AgentDeployRequest, link: AgentLinkServer) async -> AgentResponse {
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
        // Lines and the exit go on the link from the thread that produced them: a trigger's lines reach the
        // node before its result, and a service's last lines before the news that it exited.
        let output = WorkloadOutput(
            log: { text, level in link.sendLog(level: level, text: text) },
            exited: { code, message in link.send(.exited(code: Int32(clamping: code), message: message)) },
            hostCall: { service, method, arguments, traceParent in
                let call = LinkFrame.HostCall(
                    service: service, method: method, arguments: Array(arguments.utf8), traceParent: traceParent)
                switch link.hostCall(call, timeout: Self.hostCallTimeout) {
                case .success(let answer) where answer.ok: return String(decoding: answer.body, as: UTF8.self)
                case .success(let answer): throw WorkloadStartError(String(decoding: answer.body, as: UTF8.self))
                case .failure(let failure): throw WorkloadStartError("\(service).\(method): \(failure)")
                }
            })
        do {
            // An image's program is in the image; any other artifact is fetched into the VM.
            if let control = settings.controlDescriptor, request.workingDirectory == nil {
                try await BlockingIO.run { try VMGuest.fetchArtifact(control, to: request.artifactPath) }
            } else if settings.controlDescriptor != nil, !settings.inImageRoot {
                throw WorkloadStartError(
                    "this VM's root file system cannot run container images: rebuild it with `nex rootfs`")
            }
            try await runner.start(request, output: output)
            if runner is any FunctionRunner { link.growWorkers(to: request.maxConcurrency ?? 1) }
            return AgentResponse(ok: true)
        } catch {
            state.withLock { $0.runner = nil }
            return AgentResponse(ok: false, message: "\(error)")
        }
    }

    /// Runs the function for one trigger, on a link worker's thread: the reply, or the error text.
    func runTrigger(_ trigger: Trigger) -> AgentLinkServer.Outcome {
        guard let runner = state.withLock({ $0.runner }) as? any FunctionRunner else {
            return .init(ok: false, elapsedNanos: 0, body: Array("this workload is not a function".utf8))
        }
        let result = runner.run(trigger)
        if let error = result.error {
            return .init(
                ok: false, elapsedNanos: result.elapsedNanos, body: Array(error.utf8), permanent: result.permanent)
        }
        return .init(ok: true, elapsedNanos: result.elapsedNanos, body: result.reply ?? [])
    }

    func stopWorkload() async {
        let runner = state.withLock { s in
            defer { s.runner = nil }
            return s.runner
        }
        await runner?.stop(grace: .seconds(5))
    }
}
