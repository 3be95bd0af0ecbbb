// Container image benchmark, side by side in one run against one real registry (Debian's docker-registry on
// loopback):
//  - pull of a ~10 MiB image (busybox and 9 MiB of incompressible data): our registry client and cache (pull,
//    verify, unpack) beside `skopeo copy` + `umoci unpack`;
//  - cold pull-and-start: deploy → first answer of an image of busybox and the static echo service, on a node
//    whose cache is empty (namespace sandbox);
//  - warm start: the same with the image cached.
// Medians of ROUNDS rounds.
//   oci-bench AGENT ECHOSERVICE [ROUNDS]
import BenchSupport
import Foundation
import NATSTestSupport
import NIOCore
import NexModels
import NexNode
import NexOCI

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    print("usage: oci-bench AGENT ECHOSERVICE [ROUNDS]")
    exit(2)
}
let agent = arguments[1]
let echoService = arguments[2]
let rounds = arguments.count > 3 ? Int(arguments[3]) ?? 7 : 7

func millis(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

let work = FileManager.default.temporaryDirectory.appendingPathComponent("oci-bench-\(UUID().uuidString)").path
try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { ImageStore.removeTree(work) }

// The pulled image: busybox and 9 MiB of incompressible data, so the bytes moved are about 10 MiB.
var random = [UInt8](repeating: 0, count: 9 << 20)
for i in random.indices { random[i] = UInt8.random(in: 0...255) }
try Data(random).write(to: URL(fileURLWithPath: work + "/noise"))
let layout = try await OCIImageLayout.busybox(in: work + "/image", copies: ["data/noise": work + "/noise"])
// The started image: busybox and the static echo service (which answers on svc.echo).
let echoLayout = try await OCIImageLayout.busybox(
    in: work + "/echo", copies: ["bin/echoservice": echoService], entrypoint: ["/bin/echoservice"])
let registry = try await OCIRegistry.start()
try await layout.push("base", to: registry, as: "bench/noise", tag: "1")
try await echoLayout.push("base", to: registry, as: "bench/echo", tag: "1")
let digest = try OCIDigest(parsing: try layout.digest(of: "base"))
let reference = try ImageReference(parsing: "oci://\(registry.address)/bench/noise@\(digest)")
let echoDigest = try OCIDigest(parsing: try echoLayout.digest(of: "base"))
let echoReference = try ImageReference(parsing: "oci://\(registry.address)/bench/echo@\(echoDigest)")
print(
    "pulled image: \(ImageStore.treeSize(layout.path + "/blobs") >> 20) MiB in its layout; started image (echo): "
        + "\(ImageStore.treeSize(echoLayout.path + "/blobs") >> 20) MiB")

// 1. skopeo copy + umoci unpack.
var peer: [Double] = []
for round in 0..<rounds {
    let directory = work + "/peer-\(round)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let start = ContinuousClock.now
    try await TestEnvironment.run(
        "/usr/bin/skopeo",
        [
            "copy", "--quiet", "--src-tls-verify=false", "docker://\(registry.address)/bench/noise:1",
            "oci:\(directory)/layout:b",
        ], environment: ["HOME": directory])
    try await TestEnvironment.run(
        "/usr/bin/umoci", ["unpack", "--image", "\(directory)/layout:b", directory + "/bundle"])
    peer.append(millis(ContinuousClock.now - start))
    ImageStore.removeTree(directory)
}

// 2. Our client and cache, into an empty cache each round.
let dialer: RegistryClient.Dialer = { host, port in [try SocketAddress(ipAddress: host, port: port)] }
var ours: [Double] = []
for round in 0..<rounds {
    let client = try RegistryClient(registry: registry.address, settings: .init(insecure: true), dialer: dialer)
    let store = try ImageStore(root: work + "/ours-\(round)", limitBytes: 1 << 40)
    let start = ContinuousClock.now
    _ = try await store.pull(reference, expecting: digest, platform: .current, client: client, holder: "bench")
    ours.append(millis(ContinuousClock.now - start))
    ImageStore.removeTree(work + "/ours-\(round)")
}

// 3. Deploy → first answer on a node in the namespace sandbox: cold (an empty cache) and warm (cached).
let bench = try await BenchNode.start(name: "oci-bench", agent: agent) {
    $0.noSandbox = false
    $0.sandbox = .namespace
    $0.ociRegistries = [registry.address: .init(insecure: true)]
}
let artifact = BenchNode.Artifact(
    location: WorkloadLocation(url: echoReference.description)!, hash: echoDigest.description)
func firstAnswer() async throws {
    while true {
        if (try? await bench.client.request("ping", to: "svc.echo", timeout: .milliseconds(200))) != nil { return }
        try await Task.sleep(for: .milliseconds(1))
    }
}
func deployToAnswer() async throws -> Double {
    let start = ContinuousClock.now
    let run = try await bench.deploy(
        artifact, name: "echo", type: "native", environment: ["NATS_URL": bench.server.url])
    try await firstAnswer()
    let elapsed = millis(ContinuousClock.now - start)
    _ = try await bench.nex.stop(workloadID: run.id, node: bench.node.nodeID, issuer: bench.issuer)
    while try await bench.nex.info(node: bench.node.nodeID).machines.contains(where: { $0.workload.id == run.id }) {
        try await Task.sleep(for: .milliseconds(5))
    }
    return elapsed
}
// The node's home under BenchNode's resource directory.
let cache = bench.work + "/home/nodes/" + bench.node.nodeID + "/images"
var cold: [Double] = []
var warm: [Double] = []
for _ in 0..<rounds {
    // Emptied while nothing runs: what is left is the cache's directories.
    for directory in ["blobs/sha256", "images", "refs"] {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: cache + "/" + directory)) ?? [] {
            ImageStore.removeTree(cache + "/" + directory + "/" + name)
        }
    }
    cold.append(try await deployToAnswer())
    warm.append(try await deployToAnswer())
}
await bench.stop()
await registry.stop()

func row(_ name: String, _ values: [Double]) {
    print(
        name.padding(toLength: 44, withPad: " ", startingAt: 0)
            + String(
                format: "%8.1f ms   (min %.1f, max %.1f)", median(values), values.min() ?? .nan, values.max() ?? .nan))
}
print("medians of \(rounds) rounds")
row("skopeo copy + umoci unpack", peer)
row("nex pull (registry client + cache)", ours)
print(String(format: "  ratio nex / skopeo+umoci: %.2f× (target ≤ 1.2×)", median(ours) / median(peer)))
row("cold pull-and-start → first answer", cold)
row("warm start → first answer (cached)", warm)
print(String(format: "  warm start target ≤ 150 ms: %@", median(warm) <= 150 ? "met" : "not met"))
