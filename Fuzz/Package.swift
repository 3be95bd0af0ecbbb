// swift-tools-version: 6.0
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which differs between checkouts.
let rootPackage = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent
    .lowercased()

// Fuzz targets live in their own package, built with `-sanitize=fuzzer` by scripts/fuzz.sh (never by the main
// build). One executable holds every target; NEX_FUZZ_TARGET picks the one libFuzzer drives.
let package = Package(
    name: "nex-swift-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "nex-fuzz",
            dependencies: [
                .product(name: "NATSProtocol", package: rootPackage), .product(name: "NKeys", package: rootPackage),
                .product(name: "NexModels", package: rootPackage),
                .product(name: "NexAgentLink", package: rootPackage),
                .product(name: "NexNode", package: rootPackage),
                .product(name: "NexControlClient", package: rootPackage),
            ],
            // scripts/fuzz.sh adds -parse-as-library (libFuzzer supplies `main`) on its command line: no unsafe
            // flags in any manifest.
            path: "Sources/NexFuzz"
        )
    ],
    swiftLanguageModes: [.v6]
)
