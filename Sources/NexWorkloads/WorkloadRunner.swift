public import NexModels

/// Runs one workload inside an agent. One runner per workload type (`native` now; `v8` and `wasm` next),
/// all behind this protocol so the agent never knows what it runs.
public protocol WorkloadRunner: Sendable {
    /// Starts the workload; throws (with a message for the deployer) when it cannot.
    func start(_ request: AgentDeployRequest, output: WorkloadOutput) async throws
    /// Stops the workload: politely first, then by force after `grace`.
    func stop(grace: Duration) async
}

/// Where a runner reports what its workload does, and how it reaches the node's host services.
public struct WorkloadOutput: Sendable {
    /// A line of output at a ``LogEntry`` level.
    public var log: @Sendable (_ text: String, _ level: Int) -> Void
    /// The workload ended by itself or was stopped (exit code, human-readable reason).
    public var exited: @Sendable (_ code: Int, _ message: String) -> Void
    /// A host-service call brokered by the node (blocking, with its own deadline): JSON array of arguments
    /// in, JSON result out; throws with the node's error message. `traceParent` is that of the trigger being
    /// run, so the node parents the call's span on the function's.
    public var hostCall:
        @Sendable (_ service: String, _ method: String, _ argumentsJSON: String, _ traceParent: String?) throws ->
            String

    public init(
        log: @escaping @Sendable (String, Int) -> Void, exited: @escaping @Sendable (Int, String) -> Void,
        hostCall: @escaping @Sendable (String, String, String, String?) throws -> String = { _, _, _, _ in
            throw WorkloadStartError("host services are not available")
        }
    ) {
        self.log = log
        self.exited = exited
        self.hostCall = hostCall
    }
}

/// Why a runner could not start a workload.
public struct WorkloadStartError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A runner of functions: besides start and stop, it runs the function once per trigger.
public protocol FunctionRunner: WorkloadRunner {
    /// Runs the function for one trigger; never throws (failures are a result).
    ///
    /// Blocking: the agent calls it on its link's worker threads, so an engine runs on a dedicated thread,
    /// never on an event loop or the cooperative pool. Up to the deploy's `max_concurrency` calls run at once,
    /// each on an engine instance of its own.
    func run(_ trigger: Trigger) -> TriggerResult
}

/// One message for a function.
public struct Trigger: Sendable {
    /// The subject the message came on (the function sees the real one, not its trigger pattern).
    public var subject: String
    public var payload: [UInt8]
    /// The node's span for this trigger, handed on with the function's host-service calls.
    public var traceParent: String?
    /// Where the message came from, as JSON (a stream's sequence and deliveries, a bucket's key…): a
    /// JavaScript function's third argument. Nil for a core NATS trigger.
    public var context: [UInt8]?

    public init(subject: String, payload: [UInt8], traceParent: String? = nil, context: [UInt8]? = nil) {
        self.subject = subject
        self.payload = payload
        self.traceParent = traceParent
        self.context = context
    }
}

/// What one trigger of a function produced.
public struct TriggerResult: Sendable, Equatable {
    /// The reply, or nil when the function failed.
    public var reply: [UInt8]?
    /// Why it failed (message and stack, or the limit it hit).
    public var error: String?
    /// Time spent running the function.
    public var elapsedNanos: Int64
    /// A failure the function marked as one that retrying cannot help.
    public var permanent = false

    public static func success(_ reply: [UInt8], elapsedNanos: Int64) -> TriggerResult {
        TriggerResult(reply: reply, error: nil, elapsedNanos: elapsedNanos)
    }

    public static func failure(_ error: String, elapsedNanos: Int64, permanent: Bool = false) -> TriggerResult {
        TriggerResult(reply: nil, error: error, elapsedNanos: elapsedNanos, permanent: permanent)
    }
}

extension TriggerResult {
    /// Runs one trigger and times it: `body` returns the reply or an error message.
    public static func timed(_ body: () -> Result<[UInt8], TriggerFailure>) -> TriggerResult {
        let start = ContinuousClock.now
        let outcome = body()
        let elapsed = ContinuousClock.now - start
        let nanos = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        switch outcome {
        case .success(let bytes): return .success(bytes, elapsedNanos: max(nanos, 1))
        case .failure(let failure): return .failure(failure.message, elapsedNanos: nanos, permanent: failure.permanent)
        }
    }
}

/// Why a function run failed (message and stack, or the limit it hit).
public struct TriggerFailure: Error, Sendable {
    public var message: String
    /// Retrying cannot help (the function said so): a JetStream trigger dead-letters the message at once.
    public var permanent: Bool
    public init(_ message: String, permanent: Bool = false) {
        self.message = message
        self.permanent = permanent
    }
}
