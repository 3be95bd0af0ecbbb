// The WebAssembly engine alone: runs a module's trigger N times in-process (no NATS, no agent) and prints the
// median and p99 per trigger. Used to compare engine strategies and to profile with callgrind:
//   wasm-bench MODULE.wasm [CALLS] [PAUSE_MICROS]
import Foundation
import NexRunnerWasm

let args = CommandLine.arguments
guard args.count >= 2, let data = FileManager.default.contents(atPath: args[1]) else {
    print("usage: wasm-bench MODULE.wasm [CALLS]")
    exit(2)
}
let calls = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
/// A pause between calls (µs), as triggers arriving over the network leave: caches and clocks cool down.
let pauseMicros = args.count > 3 ? UInt32(args[3]) ?? 0 : 0
let function = try WasmFunction(bytes: Array(data), name: "echo")
let payload = Array("hello".utf8)
var times: [Double] = []
for _ in 0..<calls {
    if pauseMicros > 0 { usleep(pauseMicros) }
    let start = ContinuousClock.now
    guard case .reply = function.call(subject: "bench.wasm", payload: payload) else {
        print("the call failed: \(function.call(subject: "bench.wasm", payload: payload))")
        exit(1)
    }
    let elapsed = ContinuousClock.now - start
    times.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
}
times.sort()
let p50 = times[times.count / 2]
let p99 = times[min(times.count - 1, times.count * 99 / 100)]
print(String(format: "wasm trigger in-process: %d calls, p50 %.1f µs, p99 %.1f µs", calls, p50, p99))
