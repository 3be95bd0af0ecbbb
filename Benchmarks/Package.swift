// swift-tools-version: 6.0
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which differs between checkouts.
let rootPackage = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent
    .lowercased()

// Benchmarks live in their own package so the main build never compiles them. Run with scripts/bench.sh.
let package = Package(
    name: "nex-swift-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."), .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "nats-bench",
            dependencies: [
                .product(name: "NATS", package: rootPackage), .product(name: "NATSJetStream", package: rootPackage),
            ],
            path: "Sources/NATSBench"
        ),
        // A server and an in-process node for the deploy and function benchmarks.
        .target(
            name: "BenchSupport",
            dependencies: [
                .product(name: "NATS", package: rootPackage), .product(name: "NexNode", package: rootPackage),
                .product(name: "NexControlClient", package: rootPackage),
                .product(name: "NexModels", package: rootPackage), .product(name: "NKeys", package: rootPackage),
                .product(name: "NexProcess", package: rootPackage),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/BenchSupport"
        ),
        .executableTarget(
            name: "nex-bench",
            dependencies: [
                "BenchSupport", .product(name: "NexNode", package: rootPackage),
                .product(name: "NexProcess", package: rootPackage),
            ],
            path: "Sources/NexBench"),
        .executableTarget(
            name: "fn-bench",
            dependencies: [
                "BenchSupport", .product(name: "NATS", package: rootPackage),
                .product(name: "NexAgentLink", package: rootPackage), .product(name: "NexModels", package: rootPackage),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/FunctionBench"
        ),
        // Pull and start of a container image beside skopeo copy + umoci unpack of the same image.
        .executableTarget(
            name: "oci-bench",
            dependencies: [
                "BenchSupport", .product(name: "NexOCI", package: rootPackage),
                .product(name: "NATSTestSupport", package: rootPackage),
                .product(name: "NexModels", package: rootPackage),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/OCIBench"
        ),
        .executableTarget(
            name: "trigger-bench",
            dependencies: [
                "BenchSupport", .product(name: "NATS", package: rootPackage),
                .product(name: "NATSJetStream", package: rootPackage),
                .product(name: "NexModels", package: rootPackage), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/TriggerBench"
        ),
        .executableTarget(
            name: "deploy-load-bench", dependencies: ["BenchSupport", .product(name: "NATS", package: rootPackage)],
            path: "Sources/DeployLoadBench"),
        .executableTarget(
            name: "failover-bench",
            dependencies: [
                .product(name: "NATS", package: rootPackage), .product(name: "NATSTestSupport", package: rootPackage),
            ],
            path: "Sources/FailoverBench"
        ),
        // An engine alone (a WebAssembly module or a JavaScript function): the cost of one trigger without NATS
        // or an agent, for profiling.
        .executableTarget(
            name: "wasm-bench",
            dependencies: [
                .product(name: "NexRunnerWasm", package: rootPackage),
                .product(name: "NexRunnerJS", package: rootPackage),
            ],
            path: "Sources/WasmBench"),
        .executableTarget(
            name: "bench-echo", dependencies: [.product(name: "NATS", package: rootPackage)],
            path: "Sources/BenchEcho"
        ),
    ],
    swiftLanguageModes: [.v6]
)
