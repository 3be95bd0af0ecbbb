import Foundation
public import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// Runs a JavaScript function (`v8` workloads): the artifact is the source, compiled on the runner's own
/// thread; every trigger calls the function on the caller's (dedicated) thread, with the limits given. The
/// shim takes V8's lock on each entry, so the isolate may move between threads.
public final class JSRunner: FunctionRunner {
    /// Largest source accepted.
    public static let maxSourceBytes = 4 << 20

    let limits: JSFunction.Limits
    let thread = WorkerThread(name: "nex-v8")
    private let function = Mutex<JSFunction?>(nil)

    public init(limits: JSFunction.Limits = JSFunction.Limits()) {
        self.limits = limits
    }

    public func start(_ request: AgentDeployRequest, output: WorkloadOutput) async throws {
        let attributes = try? FileManager.default.attributesOfItem(atPath: request.artifactPath)
        let size = (attributes?[.size] as? Int) ?? 0
        guard size <= Self.maxSourceBytes else {
            throw WorkloadStartError("the function source is \(size) bytes; the limit is \(Self.maxSourceBytes)")
        }
        guard let data = FileManager.default.contents(atPath: request.artifactPath) else {
            throw WorkloadStartError("cannot read the function source")
        }
        let source = String(decoding: data, as: UTF8.self)
        var configuredLimits = self.limits
        if let configured = request.limits {
            configuredLimits.cpuMillis = UInt64(configured.cpuMillis)
            configuredLimits.heapBytes = configured.memoryMiB << 20
            configuredLimits.arrayBufferBytes = configured.memoryMiB << 20
        }
        let limits = configuredLimits
        let host = output.hostCall
        let compiled: Result<JSFunction, JSError> = await thread.run {
            do {
                return .success(
                    try JSFunction(source: source, limits: limits, host: host) { level, text in output.log(text, level)
                    }
                )
            } catch let error as JSError {
                return .failure(error)
            } catch {
                return .failure(JSError("\(error)"))
            }
        }
        switch compiled {
        case .success(let f): function.withLock { $0 = f }
        case .failure(let error): throw WorkloadStartError("the function does not compile: \(error)")
        }
    }

    public func run(subject: String, payload: [UInt8]) -> TriggerResult {
        guard let f = function.withLock({ $0 }) else {
            return .failure("the function is not running", elapsedNanos: 0)
        }
        return .timed {
            switch f.call(subject: subject, payload: payload) {
            case .reply(let bytes): .success(bytes)
            case .threw(let error), .limitExceeded(let error): .failure(TriggerFailure(error))
            }
        }
    }

    public func stop(grace: Duration) async {
        function.withLock { $0 = nil }
        thread.stop()
    }
}
