// swift-tools-version: 6.1
import PackageDescription

// A program that depends on nex-swift by version and uses only its NATS library: no V8, no libnode, no node.
// scripts/check-package-consumer.sh builds it against a tagged snapshot of this checkout (NEX_SWIFT_PACKAGE_URL).
let nexSwift = Context.environment["NEX_SWIFT_PACKAGE_URL"] ?? "https://github.com/nex-swift/nex-swift.git"

let package = Package(
    name: "nats-only",
    platforms: [.macOS(.v15)],
    dependencies: [.package(url: nexSwift, from: "0.1.0")],
    targets: [
        .executableTarget(
            name: "NATSOnly",
            dependencies: [
                .product(name: "NATS", package: "nex-swift"),
                .product(name: "NATSJetStream", package: "nex-swift"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
