import Foundation
import NexAgent
import NexModels
import NexProcess
import NexRunnerJS
import NexRunnerNative
import NexRunnerWasm
import NexWorkloads

// nex-agent: started by a Nex node (never by hand), one per workload.
// One workload needs few threads: not an event loop per CPU in every agent of a big host.
BlockingIO.useFewThreads()
switch NexAgent.Settings.fromEnvironment(ProcessInfo.processInfo.environment) {
case .failure(let error):
    FileHandle.standardError.write(Data("nex-agent: \(error)\n".utf8))
    exit(2)
case .success(let settings):
    let agent = NexAgent(settings: settings) { type in
        switch WorkloadType(rawValue: type) {
        case .native: NativeServiceRunner()
        case .v8: JSRunner()
        case .wasm: WasmRunner()
        case nil: nil
        }
    }
    let reason = await agent.run()
    FileHandle.standardOutput.write(Data("nex-agent \(settings.agentID): \(reason)\n".utf8))
    exit(0)
}
