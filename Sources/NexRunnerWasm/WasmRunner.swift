import Foundation
public import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// Runs a WebAssembly function (`wasm` workloads): the module is compiled once at deploy (on the runner's own
/// thread) and instantiated per trigger on the caller's dedicated thread; stderr goes to the logs at error
/// level.
public final class WasmRunner: FunctionRunner {
    /// Largest module accepted.
    public static let maxModuleBytes = 64 << 20

    let limits: WasmFunction.Limits
    let thread = WorkerThread(name: "nex-wasm")
    private let function = Mutex<WasmFunction?>(nil)

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
        let parsed: Result<WasmFunction, WasmError> = await thread.run {
            do throws(WasmError) {
                return .success(
                    try WasmFunction(
                        bytes: Array(data), name: request.workloadName, environment: request.environment,
                        limits: limits, hostCall: output.hostCall,
                        stderr: { output.log($0, LogEntry.error) }))
            } catch {
                return .failure(error)
            }
        }
        switch parsed {
        case .success(let f): function.withLock { $0 = f }
        case .failure(let error): throw WorkloadStartError("\(error)")
        }
    }

    public func run(subject: String, payload: [UInt8]) -> TriggerResult {
        guard let f = function.withLock({ $0 }) else { return .failure("the function is not running", elapsedNanos: 0) }
        return .timed {
            switch f.call(subject: subject, payload: payload) {
            case .reply(let bytes): .success(bytes)
            case .failed(let error): .failure(TriggerFailure(error))
            }
        }
    }

    public func stop(grace: Duration) async {
        function.withLock { $0 = nil }
        thread.stop()
    }
}
