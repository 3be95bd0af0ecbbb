import Foundation
import NATSTestSupport
import NIOCore
import Synchronization
import Testing

@testable import NexOCI

/// Pulls from a real registry (Debian's docker-registry on loopback) of images built with umoci and pushed with
/// skopeo, into a real cache directory.
@Suite(
    .serialized, .timeLimit(.minutes(5)),
    .enabled(if: TestEnvironment.shouldRun(needing: OCIRegistry.binary != nil && OCIImageLayout.toolsAvailable)))
struct RegistryPullTests {
    /// Connections to loopback only, as a node's policy would allow for a registry entry on 127.0.0.1.
    static let loopback: RegistryClient.Dialer = { host, port in
        guard host == "127.0.0.1" else { throw OCIError.refused(host, "tests reach loopback only") }
        return [try SocketAddress(ipAddress: host, port: port)]
    }

    /// A scratch directory for one test, removed afterwards.
    func withDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("oci-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { ImageStore.removeTree(directory) }
        return try await body(directory)
    }

    func client(_ registry: OCIRegistry, _ settings: RegistryClient.Settings = .init(insecure: true)) throws
        -> RegistryClient
    {
        try RegistryClient(registry: registry.address, settings: settings, dialer: Self.loopback)
    }

    func reference(_ registry: OCIRegistry, _ path: String) throws -> ImageReference {
        try ImageReference(parsing: "oci://\(registry.address)/\(path)")
    }

    static let amd64 = Platform(os: "linux", architecture: "amd64")

    /// Pulls `reference` for amd64 for the one holder these tests have.
    func pull(
        _ store: ImageStore, _ reference: ImageReference, expecting: OCIDigest? = nil, _ client: RegistryClient
    ) async throws -> PulledImage {
        try await store.pull(reference, expecting: expecting, platform: Self.amd64, client: client, holder: "test")
    }

    /// Why pulling `reference` for amd64 fails; nil when it succeeds.
    func pullError(_ store: ImageStore, _ reference: ImageReference, _ client: RegistryClient) async -> OCIError? {
        do {
            _ = try await store.pull(reference, expecting: nil, platform: Self.amd64, client: client, holder: "test")
            return nil
        } catch {
            return error
        }
    }

    /// Waits until `condition` holds (a line another process logs), failing after 10 s.
    func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestEnvironment.Failure("timed out: \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test func anOCIImageAndItsDockerCopyArePulledAndTheSecondDeployNeedsNoRegistry() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(
                in: directory, files: ["etc/greeting": "hello"], entrypoint: ["/bin/sh", "-c"],
                cmd: ["cat /etc/greeting"], env: ["GREETING=hi"])
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            let image = try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "tools/busybox", tag: "1")
                try await layout.push("base", to: registry, as: "tools/busybox", tag: "v2s2", format: "v2s2")
                let client = try client(registry)
                let image = try await pull(store, try reference(registry, "tools/busybox:1"), client)
                #expect(image.digest.description == (try layout.digest(of: "base")))
                #expect(image.config.config?.Entrypoint == ["/bin/sh", "-c"])
                #expect(image.config.config?.Env?.contains("GREETING=hi") == true)
                #expect(FileManager.default.contents(atPath: image.rootfs + "/etc/greeting") == Data("hello".utf8))
                let link = try FileManager.default.destinationOfSymbolicLink(atPath: image.rootfs + "/bin/sh")
                #expect(link == "/bin/busybox")
                #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))

                // Docker's schema 2: another manifest (and digest) of the same layers.
                let docker = try await pull(store, try reference(registry, "tools/busybox:v2s2"), client)
                #expect(docker.digest != image.digest)
                let manifest = try await client.manifest(repository: "tools/busybox", reference: "v2s2")
                #expect(manifest.mediaType == MediaType.dockerManifest)
                #expect(FileManager.default.contents(atPath: docker.rootfs + "/etc/greeting") == Data("hello".utf8))

                // A tag that resolves to another digest than the deploy's hash is refused, cached or not.
                await #expect(throws: OCIError.self) {
                    try await pull(
                        store, try reference(registry, "tools/busybox:v2s2"), expecting: image.digest, client)
                }
                return image
            }
            // The registry is gone: a deploy by digest of a cached image needs nothing of it.
            let unreachable = try RegistryClient(
                registry: "127.0.0.1:1", settings: .init(insecure: true), dialer: Self.loopback)
            let pinned = try await pull(
                store, try ImageReference(parsing: "oci://127.0.0.1:1/tools/busybox@\(image.digest)"),
                expecting: image.digest, unreachable)
            #expect(pinned.rootfs == image.rootfs)
        }
    }

    /// A layer skopeo recompressed with zstd unpacks as its gzip original does (its `diff_id` checked). The
    /// decompressor reads frames one after another, and a stream cut short is an error, not an end.
    @Test func aZstdLayerIsUnpackedAndACutStreamIsRefused() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory, files: ["etc/greeting": "squeezed"])
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "tools/zstd", tag: "1", compression: "zstd")
                let client = try client(registry)
                let manifest = try await client.manifest(repository: "tools/zstd", reference: "1")
                let layers = try JSONDecoder().decode(ImageManifest.self, from: Data(manifest.bytes)).layers
                #expect(layers.map(\.mediaType) == ["application/vnd.oci.image.layer.v1.tar+zstd"])
                let image = try await pull(store, try reference(registry, "tools/zstd:1"), client)
                #expect(FileManager.default.contents(atPath: image.rootfs + "/etc/greeting") == Data("squeezed".utf8))
                #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))

                let blob = try Data(
                    contentsOf: URL(fileURLWithPath: registry.blobFile(String(layers[0].digest.dropFirst(7)))))
                func inflated(_ bytes: Data) throws(OCIError) -> Int {
                    let path = directory + "/stream-\(UUID().uuidString)"
                    FileManager.default.createFile(atPath: path, contents: bytes)
                    let source = try ZstdSource(try FileSource(path: path))
                    var total = 0
                    while true {
                        let chunk = try source.read(upTo: 1 << 16)
                        if chunk.isEmpty { return total }
                        total += chunk.count
                    }
                }
                let one = try inflated(blob)
                #expect(one > 0)
                #expect(try inflated(blob + blob) == 2 * one)
                #expect {
                    try inflated(blob.prefix(blob.count - 100))
                } throws: { error in
                    "\(error)".contains("cut short")
                }
            }
        }
    }

    @Test func anIndexGivesEachNodeItsPlatformAndSaysWhatItHas() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory, files: ["etc/greeting": "multi"])
            let index = try layout.makeIndex(
                of: "base", platforms: ["linux/amd64", "linux/arm64/v8", "unknown/unknown"], as: "multi")
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await layout.push("multi", to: registry, as: "multi", tag: "1", all: true)
                let client = try client(registry)
                let image = try await pull(
                    store, try reference(registry, "multi:1"), expecting: try OCIDigest(parsing: index), client)
                #expect(image.digest.description == index)
                #expect(image.manifestDigest.description == (try layout.digest(of: "base")))
                #expect(FileManager.default.contents(atPath: image.rootfs + "/etc/greeting") == Data("multi".utf8))
                // By digest, from the cache: the index's entry for this platform is remembered.
                #expect(await store.cached(image.digest, platform: Self.amd64, holder: "test")?.rootfs == image.rootfs)

                do {
                    _ = try await store.pull(
                        try reference(registry, "multi:1"), expecting: nil,
                        platform: Platform(os: "linux", architecture: "s390x"), client: client, holder: "test")
                    Issue.record("a platform the index lacks was pulled")
                } catch let error as OCIError {
                    #expect(error == .platformMissing("linux/s390x", ["linux/amd64", "linux/arm64/v8"]))
                    #expect(error.description.contains("--platform"))
                }
            }
        }
    }

    @Test func basicAuthAsksForTheRightCredentials() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with(auth: .basic(username: "ada", password: "s3cret")) { registry in
                try await layout.push("base", to: registry, as: "private/app", tag: "1", credentials: "ada:s3cret")
                let ref = try reference(registry, "private/app:1")
                let anonymous = await pullError(store, ref, try client(registry))
                #expect(anonymous?.description.contains("asks for a username and password") == true)
                let wrong = RegistryClient.Settings(insecure: true, username: "ada", password: "guess")
                let refused = await pullError(store, ref, try client(registry, wrong))
                #expect(refused?.description.contains("check the username and password") == true)
                let right = RegistryClient.Settings(insecure: true, username: "ada", password: "s3cret")
                let image = try await pull(store, ref, try client(registry, right))
                #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))
            }
        }
    }

    @Test func bearerTokensComeFromTheRealmTheRegistryNames() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            // Pushed while open, then served with token auth from the same storage.
            let storage = directory + "/storage"
            try await OCIRegistry.with(storage: storage) { open in
                try await layout.push("base", to: open, as: "team/app", tag: "1")
            }
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCITokenServer.with(username: "bob", password: "hunter2", repositories: ["team/app"]) { tokens in
                try await OCIRegistry.with(storage: storage, auth: tokens.auth) { registry in
                    let ref = try reference(registry, "team/app:1")
                    let anonymous = await pullError(store, ref, try client(registry))
                    #expect(anonymous?.description.contains("refused an anonymous pull") == true)
                    #expect(tokens.issued == 0)
                    let settings = RegistryClient.Settings(insecure: true, username: "bob", password: "hunter2")
                    let image = try await pull(store, ref, try client(registry, settings))
                    #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))
                    // One token for the repository's pull scope, reused for the manifest, the config and the
                    // layers (the service logs it just after answering: waited for, never more than one).
                    let deadline = ContinuousClock.now + .seconds(10)
                    while tokens.issued == 0, ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                    #expect(tokens.issued == 1)
                }
            }
        }
    }

    /// A token is reused until the `expires_in` its service gave runs out, then fetched again.
    @Test func aTokenIsReusedUntilItExpiresThenRenewed() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            let storage = directory + "/storage"
            try await OCIRegistry.with(storage: storage) { open in
                try await layout.push("base", to: open, as: "team/app", tag: "1")
            }
            let lifetime = 3
            try await OCITokenServer.with(
                username: "bob", password: "hunter2", repositories: ["team/app"], lifetime: lifetime
            ) { tokens in
                try await OCIRegistry.with(storage: storage, auth: tokens.auth) { registry in
                    let settings = RegistryClient.Settings(insecure: true, username: "bob", password: "hunter2")
                    let client = try client(registry, settings)
                    let started = ContinuousClock.now
                    _ = try await client.manifest(repository: "team/app", reference: "1")
                    // The token arrived before the manifest: it runs out by then + its lifetime.
                    let firstDone = ContinuousClock.now
                    try await waitUntil("the first token is issued") { tokens.issued == 1 }
                    _ = try await client.manifest(repository: "team/app", reference: "1")
                    // Only meaningful while the first token is still good (it always is, unless the machine stalls).
                    if ContinuousClock.now - started < .seconds(lifetime) { #expect(tokens.issued == 1) }
                    // The passing of its lifetime is what is tested: nothing else to wait on.
                    try await Task.sleep(until: firstDone + .seconds(lifetime) + .milliseconds(100))
                    _ = try await client.manifest(repository: "team/app", reference: "1")
                    try await waitUntil("a second token is issued") { tokens.issued == 2 }
                }
            }
        }
    }

    /// A registry that sends blobs to its storage host (307): the download follows, the storage host never
    /// sees the registry's credentials, and the client's dialer decides whether that host may be reached.
    @Test func aRedirectedBlobGetsNoCredentialsAndItsHostIsAskedOfThePolicy() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "app", tag: "1")
                try await OCIRegistryProxy.with(
                    upstream: registry.address, username: "ann", password: "s3cret", redirectBlobs: true
                ) { proxy in
                    let ref = try ImageReference(parsing: "oci://\(proxy.address)/app:1")
                    let settings = RegistryClient.Settings(insecure: true, username: "ann", password: "s3cret")
                    let dialed = Mutex<Set<String>>([])
                    let client = try RegistryClient(registry: proxy.address, settings: settings) { host, port in
                        dialed.withLock { _ = $0.insert("\(host):\(port)") }
                        guard host == "127.0.0.1" || host == "127.0.0.2" else {
                            throw OCIError.refused(host, "tests reach loopback only")
                        }
                        return [try SocketAddress(ipAddress: host, port: port)]
                    }
                    let image = try await pull(store, ref, client)
                    #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))
                    // The proxy logs a request before answering it: every line is on its way by now.
                    try await waitUntil("the blob host's lines") {
                        proxy.requests.filter { $0.hasPrefix("blobs 200 GET") }.count >= 2
                    }
                    let blobs = proxy.requests.filter { $0.hasPrefix("blobs 200 GET") }
                    #expect(blobs.count == 2, "the config and the layer: \(proxy.requests)")
                    #expect(blobs.allSatisfy { $0.hasSuffix("auth=no") }, "\(proxy.requests)")
                    #expect(proxy.requests.contains { $0.hasPrefix("front 307") && $0.hasSuffix("auth=yes") })
                    #expect(dialed.withLock { $0.contains(proxy.blobHost) })

                    // A policy that does not allow the storage host: refused, by name, and nothing cached.
                    let strict = try RegistryClient(registry: proxy.address, settings: settings) { host, port in
                        guard host == "127.0.0.1" else { throw OCIError.refused("\(host):\(port)", "not allowed") }
                        return [try SocketAddress(ipAddress: host, port: port)]
                    }
                    let other = try ImageStore(root: directory + "/cache2", limitBytes: 1 << 30)
                    let error = await pullError(other, ref, strict)
                    guard case .refused(let host, _) = error else {
                        Issue.record(
                            "a redirect to a host the policy refuses was followed: \(String(describing: error))")
                        return
                    }
                    #expect(host == proxy.blobHost)
                }
            }
        }
    }

    /// 503s are retried (with a pause) and a pull that meets fewer than its attempts succeeds; a registry that
    /// keeps failing is reported with its status and message after the last attempt.
    @Test func transientFailuresAreRetriedAndLastingOnesReported() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "app", tag: "1")
                let settings = RegistryClient.Settings(insecure: true, username: "ann", password: "s3cret")
                try await OCIRegistryProxy.with(
                    upstream: registry.address, username: "ann", password: "s3cret", failures: 2
                ) { proxy in
                    let client = try RegistryClient(registry: proxy.address, settings: settings, dialer: Self.loopback)
                    let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
                    let image = try await pull(
                        store, try ImageReference(parsing: "oci://\(proxy.address)/app:1"), client)
                    #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))
                    try await waitUntil("the 503s logged") {
                        proxy.requests.filter { $0.hasPrefix("front 503") }.count >= 2
                    }
                    #expect(proxy.requests.filter { $0.hasPrefix("front 503") }.count == 2, "\(proxy.requests)")
                }
                try await OCIRegistryProxy.with(
                    upstream: registry.address, username: "ann", password: "s3cret", failures: 1000
                ) { proxy in
                    let client = try RegistryClient(registry: proxy.address, settings: settings, dialer: Self.loopback)
                    let store = try ImageStore(root: directory + "/cache2", limitBytes: 1 << 30)
                    let error = await pullError(
                        store, try ImageReference(parsing: "oci://\(proxy.address)/app:1"), client)
                    guard case .registry(let status, let message) = error else {
                        Issue.record("a failing registry was not reported: \(String(describing: error))")
                        return
                    }
                    #expect(status == 503 && message.contains("shedding load"), "\(message)")
                    try await waitUntil("the 503s logged") {
                        proxy.requests.filter { $0.hasPrefix("front 503") }.count >= client.attempts
                    }
                    #expect(
                        proxy.requests.filter { $0.hasPrefix("front 503") }.count == client.attempts,
                        "\(proxy.requests)")
                }
            }
        }
    }

    /// A registry that sends a blob a byte at a time (never idle long enough to time out) is given up at the
    /// pull's deadline.
    @Test func aPullThatOutlastsItsDeadlineIsGivenUp() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "app", tag: "1")
                try await OCIRegistryProxy.with(
                    upstream: registry.address, username: "ann", password: "s3cret", trickleBlobs: true
                ) { proxy in
                    let settings = RegistryClient.Settings(insecure: true, username: "ann", password: "s3cret")
                    let client = try RegistryClient(registry: proxy.address, settings: settings, dialer: Self.loopback)
                    let store = try ImageStore(
                        root: directory + "/cache", limitBytes: 1 << 30, pullDeadline: .seconds(2))
                    let started = ContinuousClock.now
                    let error = await pullError(
                        store, try ImageReference(parsing: "oci://\(proxy.address)/app:1"), client)
                    #expect(error?.description.contains("took longer than") == true, "\(String(describing: error))")
                    #expect(ContinuousClock.now - started < .seconds(60))
                    try await waitUntil("the trickled blob's request logged") {
                        proxy.requests.contains { $0.hasPrefix("front 200 GET") && $0.contains("/blobs/") }
                    }
                }
            }
        }
    }

    @Test func aTamperedBlobIsRefusedAndNeverCached() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(in: directory)
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await layout.push("base", to: registry, as: "app", tag: "1")
                // Same size, one byte changed, in the registry's own storage: what a compromised mirror serves.
                let manifest = try await client(registry).manifest(repository: "app", reference: "1")
                let layer = try JSONDecoder().decode(ImageManifest.self, from: Data(manifest.bytes)).layers[0]
                let hex = String(layer.digest.dropFirst("sha256:".count))
                var bytes = try Data(contentsOf: URL(fileURLWithPath: registry.blobFile(hex)))
                bytes[bytes.count / 2] ^= 0xff
                try bytes.write(to: URL(fileURLWithPath: registry.blobFile(hex)))

                let error = await pullError(store, try reference(registry, "app:1"), try client(registry))
                guard case .digestMismatch(let what, let expected, _) = error else {
                    Issue.record("a tampered blob was not refused: \(String(describing: error))")
                    return
                }
                #expect(what.contains(hex) && expected == layer.digest)
                let blobs = try FileManager.default.contentsOfDirectory(atPath: directory + "/cache/blobs/sha256")
                #expect(!blobs.contains { $0.hasPrefix(hex) }, "\(blobs)")
                #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/cache/images").isEmpty)
            }
        }
    }

    @Test func aLayerThatClimbsOutIsRefusedAndAWhiteoutHidesALowerLayer() async throws {
        try await withDirectory { directory in
            let layout = try await OCIImageLayout.busybox(
                in: directory, files: ["etc/old.conf": "old", "data/a": "a", "data/b": "b"])
            var evil = TarBuilder()
            evil.add("../../escaped", content: Array("out".utf8))
            try Data(evil.finished()).write(to: URL(fileURLWithPath: directory + "/evil.tar"))
            try await layout.addLayer(directory + "/evil.tar", from: "base", as: "evil")
            var hiding = TarBuilder()
            hiding.add("etc/.wh.old.conf")
            hiding.add("data/c", content: Array("c".utf8))
            hiding.add("data/.wh..wh..opq")  // after data/c in the layer: it still hides only what is below
            try Data(hiding.finished()).write(to: URL(fileURLWithPath: directory + "/hiding.tar"))
            try await layout.addLayer(directory + "/hiding.tar", from: "base", as: "hiding")
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await layout.push("evil", to: registry, as: "app", tag: "evil")
                try await layout.push("hiding", to: registry, as: "app", tag: "hiding")

                let error = await pullError(store, try reference(registry, "app:evil"), try client(registry))
                guard case .escapes(let entry, _) = error else {
                    Issue.record("a layer climbing out was not refused: \(String(describing: error))")
                    return
                }
                #expect(entry == "../../escaped")
                #expect(!FileManager.default.fileExists(atPath: directory + "/escaped"))
                #expect(!FileManager.default.fileExists(atPath: directory + "/cache/escaped"))
                #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/cache/images").isEmpty)

                let image = try await pull(store, try reference(registry, "app:hiding"), try client(registry))
                #expect(!FileManager.default.fileExists(atPath: image.rootfs + "/etc/old.conf"))
                #expect(try FileManager.default.contentsOfDirectory(atPath: image.rootfs + "/data") == ["c"])
                #expect(FileManager.default.isExecutableFile(atPath: image.rootfs + "/bin/busybox"))
            }
        }
    }

    @Test func evictionNeverRemovesAPinnedImage() async throws {
        try await withDirectory { directory in
            let first = try await OCIImageLayout.busybox(in: directory + "/one", files: ["id": "one"])
            let second = try await OCIImageLayout.busybox(in: directory + "/two", files: ["id": "two"])
            // Room for far less than one image: everything unpinned goes at once.
            let store = try ImageStore(root: directory + "/cache", limitBytes: 1, maxImageBytes: 1 << 30)
            try await OCIRegistry.with { registry in
                try await first.push("base", to: registry, as: "one", tag: "1")
                try await second.push("base", to: registry, as: "two", tag: "1")
                let client = try client(registry)
                let one = try await pull(store, try reference(registry, "one:1"), client)
                let two = try await pull(store, try reference(registry, "two:1"), client)
                // Both pinned (their workloads run): both kept, over the limit.
                #expect(FileManager.default.contents(atPath: one.rootfs + "/id") == Data("one".utf8))
                #expect(FileManager.default.contents(atPath: two.rootfs + "/id") == Data("two".utf8))
                #expect(await store.evict().isEmpty)
                // What a sandbox keeps beside an image's root (a VM's disk of it) counts with the image.
                let usage = await store.usage()
                let disk = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }  // random: no file system shrinks it
                try Data(disk).write(to: URL(fileURLWithPath: two.rootfs + ".0.0.ext4"))
                #expect(await store.usage() >= usage + (1 << 20))

                let blobs = { try FileManager.default.contentsOfDirectory(atPath: directory + "/cache/blobs/sha256") }
                let blobsBefore = try blobs()
                // Held by a second workload too: one holder released twice leaves the other's pin.
                await store.pin(one.manifestDigest, holder: "other")
                await store.unpin(one.manifestDigest, holder: "test")
                await store.unpin(one.manifestDigest, holder: "test")
                #expect(await store.evict().isEmpty)
                await store.unpin(one.manifestDigest, holder: "other")
                #expect(await store.evict() == [one.manifestDigest])
                #expect(!FileManager.default.fileExists(atPath: one.rootfs))
                #expect(FileManager.default.contents(atPath: two.rootfs + "/id") == Data("two".utf8))
                #expect(await store.cached(one.digest, platform: Self.amd64, holder: "test") == nil)
                // The blobs only the evicted image used (its config and layer) went with it.
                #expect(try blobs().count == blobsBefore.count - 2)

                // An image larger than the node takes is refused before a byte of it is stored.
                let small = try ImageStore(root: directory + "/small", limitBytes: 1 << 30, maxImageBytes: 1024)
                let error = await pullError(small, try reference(registry, "one:1"), client)
                guard case .tooLarge = error else {
                    Issue.record("an image past the limit was not refused: \(String(describing: error))")
                    return
                }
                #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/small/blobs/sha256").isEmpty)
            }
        }
    }
}
