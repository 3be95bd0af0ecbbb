// swift-tools-version: 6.0
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which differs between checkouts.
let rootPackage = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent.lowercased()

// Benchmarks live in their own package so the main build never compiles them. Run with scripts/bench.sh.
let package = Package(
    name: "nex-swift-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: ".."), .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")],
    targets: [
        .executableTarget(
            name: "nats-bench",
            dependencies: [.product(name: "NATS", package: rootPackage), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOCore", package: "swift-nio")],
            path: "Sources/NATSBench"
        )
    ],
    swiftLanguageModes: [.v6]
)
