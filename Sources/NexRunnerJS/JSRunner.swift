import Foundation
public import NexModels
import NexProcess
public import NexWorkloads
import Synchronization

/// Runs a JavaScript function (`v8` workloads): the artifact is the source, compiled on the runner's own
/// thread; every trigger calls the function on the caller's (dedicated) thread, with the limits given. Up to
/// `max_concurrency` triggers run at once, each in an isolate of its own (so each has its own globals). The
/// shim takes V8's lock on each entry, so an isolate may move between threads.
public final class JSRunner: FunctionRunner {
    /// Largest source accepted.
    public static let maxSourceBytes = 4 << 20

    let limits: JSFunction.Limits
    let thread = WorkerThread(name: "nex-v8")
    private let functions = Mutex<EnginePool<JSFunction>?>(nil)

    public init(limits: JSFunction.Limits = JSFunction.Limits()) {
        self.limits = limits
    }

    public func start(_ request: AgentDeployRequest, output: WorkloadOutput) async throws {
        // Unreadable: the read below fails and says so.
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
        let concurrency = request.maxConcurrency ?? 1
        let compiled: Result<EnginePool<JSFunction>, JSError> = await thread.run {
            do {
                return .success(
                    try EnginePool(capacity: concurrency) { slot in
                        try JSFunction(
                            source: source, name: request.sourceName ?? "function.js", limits: limits,
                            host: { service, method, args in try host(service, method, args, slot.traceParent) },
                            log: { level, text in output.log(text, level) })
                    })
            } catch let error as JSError {
                return .failure(error)
            } catch {
                return .failure(JSError("\(error)"))
            }
        }
        switch compiled {
        case .success(let pool): functions.withLock { $0 = pool }
        case .failure(let error): throw WorkloadStartError("the function does not compile: \(error)")
        }
    }

    public func run(_ trigger: Trigger) -> TriggerResult {
        guard let pool = functions.withLock({ $0 }) else {
            return .failure("the function is not running", elapsedNanos: 0)
        }
        return pool.run(trigger) { f in
            switch f.call(subject: trigger.subject, payload: trigger.payload, context: trigger.context) {
            case .reply(let bytes): .success(bytes)
            case .threw(let error), .limitExceeded(let error): .failure(TriggerFailure(error))
            case .threwPermanently(let error): .failure(TriggerFailure(error, permanent: true))
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
