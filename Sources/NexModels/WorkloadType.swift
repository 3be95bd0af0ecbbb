/// The kinds of workload a node runs: a deploy's `type` and a node's `workload_types`.
public enum WorkloadType: String, Codable, Sendable, CaseIterable, CustomStringConvertible {
    /// An executable run as a long-lived service.
    case native
    /// A JavaScript function, run in V8.
    case v8
    /// A WebAssembly (WASI preview1) function, run in V8.
    case wasm

    public var description: String { rawValue }

    /// Functions run per trigger and need trigger subjects; services run on their own.
    public var isFunction: Bool { self != .native }

    /// The type a file's name suggests (as devrun guesses it): `.js` is v8, `.wasm` is wasm, anything else native.
    public init(guessingFrom file: String) {
        if file.hasSuffix(".js") {
            self = .v8
        } else if file.hasSuffix(".wasm") {
            self = .wasm
        } else {
            self = .native
        }
    }
}

extension DeployRequest {
    /// The request's `type` as a workload type; nil for a type no node runs.
    public var workloadType: WorkloadType? { WorkloadType(rawValue: type) }
}
