// swift-tools-version: 6.1
import PackageDescription

// Layered targets: a target imports only from lower layers (see docs/architecture.md).
//   L0 NUID, NKeys          ids; nkeys (base32 + CRC16 + Ed25519), xkeys (libsodium), NATS JWTs, creds files
//   L1 NATSProtocol         wire ops, parser/encoder, headers, INFO/CONNECT, pure state machines
//   L2 NATS                 the client on SwiftNIO
//   L3 NATSJetStream        streams, consumers, key-value and object stores
//   L3 NATSServices         the NATS micro service protocol ($SRV discovery, stats)
//   L4 NexModels            the Nex control API, events and logs as Codable types (no NATS)
//   L5 NexControlClient     typed client of $NEX.* (ping, auction, info, deploy, stop, lame duck, events, logs)
//   L0 CNexSpawn, NexProcess  fork/exec with parent-death signal, line readers, nats-server children
//   L5 NexAgentLink         the node↔agent link, their only road (typed frames; agent threads, node event loop)
//   L5 NexWorkloads         the WorkloadRunner protocol an agent runs workloads through
//   L6 NexRunnerNative      native services;  NexSandbox  sandbox drivers (the node starts agents through one)
//   L7 NexAgent, NexNode    the agent (one per workload) and the node (control API, pool, workloads)
//   L8 NexUI                the web dashboard (`nex ui`) over the control API
//   L8 NexCLICommands       every `nex` subcommand;  L9 nex, nex-agent  one-file executables
//   T  NATSTestSupport      real nats-server processes for tests, demos and benchmarks
let package = Package(
    name: "nex-swift",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "NUID", targets: ["NUID"]),
        .library(name: "NKeys", targets: ["NKeys"]),
        .library(name: "NATSProtocol", targets: ["NATSProtocol"]),
        .library(name: "NATS", targets: ["NATS"]),
        .library(name: "NATSJetStream", targets: ["NATSJetStream"]),
        .library(name: "NATSServices", targets: ["NATSServices"]),
        .library(name: "NATSTestSupport", targets: ["NATSTestSupport"]),
        .library(name: "NexModels", targets: ["NexModels"]),
        .library(name: "NexControlClient", targets: ["NexControlClient"]),
        .library(name: "NexNode", targets: ["NexNode"]),
        .library(name: "NexProcess", targets: ["NexProcess"]),
        .library(name: "NexAgentLink", targets: ["NexAgentLink"]),
        .library(name: "NexRunnerJS", targets: ["NexRunnerJS"]),
        .library(name: "NexRunnerWasm", targets: ["NexRunnerWasm"]),
        .library(name: "NexOCI", targets: ["NexOCI"]),
        .executable(name: "nats-demo", targets: ["NATSDemo"]),
        .executable(name: "nex", targets: ["nex"]),
        .executable(name: "nex-agent", targets: ["nex-agent"]),
        .executable(name: "echoservice", targets: ["EchoService"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // Observability: metrics on a Prometheus registry, served (with the dashboard) by Hummingbird. No traits:
        // Hummingbird's defaults pull in swift-configuration, which nothing here uses.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        // Traces: the Tracing API everywhere, OpenTelemetry (OTLP over HTTP only: no gRPC) in the executable.
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // L0
        .target(name: "NUID"),
        .systemLibrary(name: "CSodium"),  // libsodium-dev, installed by scripts/setup.sh
        .target(
            name: "NKeys",
            dependencies: ["CSodium", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(name: "CNexSpawn"),
        .target(
            name: "NexProcess",
            dependencies: [
                "CNexSpawn", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "NexAgentLink",
            dependencies: [
                "CNexSpawn", "NexModels", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // L1
        .target(
            name: "NATSProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // L2
        .target(
            name: "NATS",
            dependencies: [
                "NUID", "NKeys", "NATSProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ]
        ),
        // L3
        .target(
            name: "NATSJetStream",
            dependencies: [
                "NATS", "NUID", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            // Async APIs run on the caller's executor: no hop per publish, get or put.
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .target(
            name: "NATSServices",
            dependencies: ["NATS", "NUID", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        // L4: the Nex wire contract as types (Foundation only: nothing here knows NATS).
        .target(name: "NexModels"),
        // L5: the typed client of $NEX (what the CLI and tests use).
        .target(
            name: "NexControlClient",
            dependencies: ["NATS", "NATSJetStream", "NKeys", "NexModels"],
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        // L0: V8 from Debian's libnode 18, a system library found through pkg-config (scripts/setup.sh installs
        // it and its `nex-libnode.pc`), and the C interface to it (a C++ shim) that only NexRunnerJS imports.
        // No unsafe flags anywhere: another package can depend on this one by version.
        .systemLibrary(name: "CLibNode", pkgConfig: "nex-libnode"),
        // Container images: references, digests, and layers unpacked into a root file system that they cannot
        // leave (gzip and zstd through the system's zlib and libzstd).
        .systemLibrary(name: "CZlib"),
        .systemLibrary(name: "CZstd"),
        .target(
            name: "NexOCI",
            dependencies: [
                "CZlib", "CZstd", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(name: "CV8", dependencies: ["CLibNode"]),
        // L5/L6: how an agent runs a workload, one runner per type; how a node starts agents.
        .target(name: "NexWorkloads", dependencies: ["NexModels"]),
        .target(name: "NexRunnerNative", dependencies: ["NexWorkloads", "NexModels", "NexProcess"]),
        .target(name: "NexRunnerJS", dependencies: ["CV8", "NexWorkloads", "NexModels", "NexProcess"]),
        // WebAssembly runs in V8 too: the WASI runtime is JavaScript, compiled into the binary.
        .target(
            name: "NexRunnerWasm", dependencies: ["NexRunnerJS", "NexWorkloads", "NexModels", "NexProcess"],
            resources: [.embedInCode("Resources/wasi.js")]
        ),
        .target(
            name: "NexSandbox",
            dependencies: [
                "NexModels", "NexProcess", "CNexSpawn", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
            ]
        ),
        // L7: the agent (one per workload) and the node.
        .target(
            name: "NexAgent",
            dependencies: ["NexModels", "NexWorkloads", "NexProcess", "NexAgentLink", "CNexSpawn"]
        ),
        .target(
            name: "NexNode",
            dependencies: [
                "NexModels", "NKeys", "NATS", "NATSJetStream", "NUID", "NexControlClient", "NexProcess", "NexSandbox",
                "NexAgentLink", "NexOCI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ]
        ),
        // L8: the web dashboard (`nex ui`), a client of the control API; its page is compiled into the binary.
        .target(
            name: "NexUI",
            dependencies: [
                "NATS", "NKeys", "NexModels", "NexControlClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.embedInCode("Resources/index.html")]
        ),
        // L8: every `nex` subcommand; L9: the one-file executable.
        .target(
            name: "NexCLICommands",
            dependencies: [
                "NATS", "NATSJetStream", "NKeys", "NexModels", "NexControlClient", "NexNode", "NexProcess",
                "NexSandbox", "NexUI", "NexOCI", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "nex",
            dependencies: ["NexCLICommands", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "nex-agent",
            dependencies: [
                "NexAgent", "NexModels", "NexProcess", "NexRunnerNative", "NexRunnerJS", "NexRunnerWasm",
                "NexWorkloads",
            ]),
        // The example service of the Nex scenarios (svc.echo as a NATS micro service). It lives here, not in a
        // package of its own, because the tests run it and CI would otherwise build SwiftNIO twice.
        .executableTarget(name: "EchoService", dependencies: ["NATS", "NATSServices"]),
        // Test support: real servers, no XCTest/Testing import.
        .target(
            name: "NATSTestSupport",
            dependencies: ["NKeys", "NexProcess", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "NATSDemo",
            dependencies: ["NATS", "NATSTestSupport", .product(name: "Logging", package: "swift-log")]
        ),

        // Unit tests: no server needed.
        .testTarget(name: "NUIDTests", dependencies: ["NUID"]),
        .testTarget(name: "NKeysTests", dependencies: ["NKeys", "NATSTestSupport"], resources: [.copy("Vectors")]),
        .testTarget(name: "NATSProtocolTests", dependencies: ["NATSProtocol"]),
        .testTarget(name: "NATSJetStreamTests", dependencies: ["NATSJetStream"]),
        .testTarget(name: "NexModelsTests", dependencies: ["NexModels"], resources: [.copy("Golden")]),
        .testTarget(
            name: "NexNodeTests",
            dependencies: [
                "NexNode", "NexModels", "NKeys", "NexControlClient", "NexSandbox", "NexUI",
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),
        .testTarget(name: "NexRunnerJSTests", dependencies: ["NexRunnerJS"]),
        .testTarget(
            name: "NexAgentLinkTests",
            dependencies: ["NexAgentLink", "NexModels", .product(name: "NIOPosix", package: "swift-nio")]
        ),
        .testTarget(name: "NexRunnerWasmTests", dependencies: ["NexRunnerWasm", "NATSTestSupport"]),
        // The registry tests run a real registry (Debian's docker-registry) and build images with umoci and skopeo.
        .testTarget(
            name: "NexOCITests",
            dependencies: ["NexOCI", "NATSTestSupport", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "NATSTests",
            dependencies: [
                "NATS", "NATSProtocol",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        // Integration tests: real nats-server processes and real peers (nats-py, nats.go).
        .testTarget(
            name: "NATSIntegrationTests",
            dependencies: [
                "NATS", "NKeys", "NATSJetStream", "NATSServices", "NATSTestSupport", "NexModels", "NexControlClient",
                "NexNode", "NexSandbox", "NexProcess", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
