// The engine alone: runs a WebAssembly module's or a JavaScript function's trigger N times in-process (no
// NATS, no agent) and prints the median and p99 per trigger. Used to compare engine strategies and to profile:
//   wasm-bench MODULE.wasm|FUNCTION.js [CALLS] [PAUSE_MICROS]
// A JavaScript function's console lines are taken and dropped, as a node would take them.
import Foundation
import NexRunnerJS
import NexRunnerWasm

let args = CommandLine.arguments
guard args.count >= 2, let data = FileManager.default.contents(atPath: args[1]) else {
    print("usage: wasm-bench MODULE.wasm|FUNCTION.js [CALLS] [PAUSE_MICROS]")
    exit(2)
}
let calls = args.count > 2 ? Int(args[2]) ?? 1000 : 1000
/// A pause between calls (µs), as triggers arriving over the network leave: caches and clocks cool down.
let pauseMicros = args.count > 3 ? UInt32(args[3]) ?? 0 : 0
let isJavaScript = args[1].hasSuffix(".js")
let call: (String, [UInt8]) -> String?
if isJavaScript {
    let function = try JSFunction(source: String(decoding: data, as: UTF8.self), log: { _, _ in })
    call = { subject, payload in
        guard case .reply = function.call(subject: subject, payload: payload) else {
            return "\(function.call(subject: subject, payload: payload))"
        }
        return nil
    }
} else {
    let function = try WasmFunction(bytes: Array(data), name: "echo")
    call = { subject, payload in
        guard case .reply = function.call(subject: subject, payload: payload) else {
            return "\(function.call(subject: subject, payload: payload))"
        }
        return nil
    }
}
let payload = Array("hello".utf8)
var times: [Double] = []
for _ in 0..<calls {
    if pauseMicros > 0 { usleep(pauseMicros) }
    let start = ContinuousClock.now
    if let failure = call("bench.engine", payload) {
        print("the call failed: \(failure)")
        exit(1)
    }
    let elapsed = ContinuousClock.now - start
    times.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
}
times.sort()
let p50 = times[times.count / 2]
let p99 = times[min(times.count - 1, times.count * 99 / 100)]
print(
    String(
        format: "\(isJavaScript ? "js" : "wasm") trigger in-process: %d calls, p50 %.1f µs, p99 %.1f µs", calls, p50,
        p99))
