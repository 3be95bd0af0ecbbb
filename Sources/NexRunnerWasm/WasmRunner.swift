import Foundation
public import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// Runs a WebAssembly function (`wasm` workloads): the module is compiled once at deploy (on the runner's own
/// thread) and instantiated per trigger on the caller's dedicated thread; stderr goes to the logs at error
/// level. Up to `max_concurrency` triggers run at once, each in an engine (isolate) of its own.
public final class WasmRunner: FunctionRunner {
    /// Largest module accepted.
    public static let maxModuleBytes = 64 << 20

    let limits: WasmFunction.Limits
    let thread = WorkerThread(name: "nex-wasm")
    private let functions = Mutex<EnginePool<WasmFunction>?>(nil)

    public init(limits: WasmFunction.Limits = WasmFunction.Limits()) {
        self.limits = limits
    }

    public func start(_ request: AgentDeployRequest, output: WorkloadOutput) async throws {
        guard let data = FileManager.default.contents(atPath: request.artifactPath) else {
            throw WorkloadStartError("cannot read the module")
        }
        guard data.count <= Self.maxModuleBytes else {
            throw WorkloadStartError("the module is \(data.count) bytes; the limit is \(Self.maxModuleBytes)")
        }
        var configuredLimits = self.limits
        if let configured = request.limits {
            configuredLimits.cpuMillis = UInt64(configured.cpuMillis)
            configuredLimits.memoryBytes = configured.memoryMiB << 20
        }
        let limits = configuredLimits
        let host = output.hostCall
        let concurrency = request.maxConcurrency ?? 1
        let parsed: Result<EnginePool<WasmFunction>, any Error> = await thread.run {
            Result {
                try EnginePool(capacity: concurrency) { slot in
                    try WasmFunction(
                        bytes: Array(data), name: request.workloadName, environment: request.environment,
                        limits: limits,
                        hostCall: { service, method, args in try host(service, method, args, slot.traceParent) },
                        stderr: { output.log($0, LogEntry.error) })
                }
            }
        }
        switch parsed {
        case .success(let pool): functions.withLock { $0 = pool }
        case .failure(let error): throw WorkloadStartError("\(error)")
        }
    }

    public func run(_ trigger: Trigger) -> TriggerResult {
        guard let pool = functions.withLock({ $0 }) else {
            return .failure("the function is not running", elapsedNanos: 0)
        }
        return pool.run(trigger) { f in
            switch f.call(subject: trigger.subject, payload: trigger.payload, context: trigger.context) {
            case .reply(let bytes): .success(bytes)
            case .failed(let error): .failure(TriggerFailure(error))
            case .failedPermanently(let error): .failure(TriggerFailure(error, permanent: true))
            }
        }
    }

    public func stop(grace: Duration) async {
        functions.withLock { pool in
            pool?.close()
            pool = nil
        }
        thread.stop()
    }
}
