import Foundation
import NIOPosix

/// An image pulled and unpacked, ready to run.
public struct PulledImage: Sendable, Equatable {
    /// What the reference resolved to (the index's digest for a multi-platform image): what a deploy's hash names.
    public var digest: OCIDigest
    /// The manifest of this node's platform.
    public var manifestDigest: OCIDigest
    public var config: ImageConfig
    /// The unpacked root file system.
    public var rootfs: String
    /// What unpacking skipped (device nodes…), a line each for the node's log; empty when it came from the cache.
    public var notes: [String]
    /// Bytes of its unpacked root on disk: what a node's limits count.
    public var bytes: Int64 = 0
}

/// The node's content-addressed image cache: blobs and unpacked root file systems under `root`, keyed by digest,
/// shared by every workload of an image, kept under a size limit by evicting the least recently used image that
/// no running workload holds.
///
/// Layout: `blobs/sha256/HEX` (manifests, configs, layers), `images/HEX/` (a manifest's `rootfs/` and
/// `image.json`, which exists only once the image is complete), `refs/HEX@PLATFORM` (an index's manifest for a
/// platform, so a cached image by digest needs no registry).
public actor ImageStore {
    public let root: String
    /// Bytes the cache may hold; past it, unpinned images are evicted, least recently used first.
    public let limitBytes: Int64
    /// Whether setuid and setgid bits survive unpacking.
    public let keepsSetID: Bool
    /// The most one image's layers may unpack to, all together.
    public let maxLayerBytes: Int
    /// The most one image's blobs (config and layers, as their descriptors say) may be.
    public let maxImageBytes: Int64
    /// Directories every unpacked root gets (empty, where the image has nothing there): what a sandbox mounts
    /// over, in a root it binds read-only.
    public let mountPoints: [String]
    /// The longest one pull (manifests, blobs, unpacking) may take: a registry that trickles bytes just fast
    /// enough to beat the idle timeout still ends.
    public let pullDeadline: Duration

    /// Pulls under way, by reference and platform, and the holders waiting for each.
    private var pulls: [String: (task: Task<PulledImage, any Error>, holders: Set<String>)] = [:]
    /// Who holds each image (a workload's id): pinning twice or unpinning twice for one holder is harmless.
    private var pins: [OCIDigest: Set<String>] = [:]
    /// Blobs a pull under way has stored or is storing: eviction leaves them alone.
    private var inFlight: [String: Int] = [:]
    /// Set by ``shutdown()``.
    private var closed = false

    /// What the cache keeps about a complete image.
    struct Record: Codable {
        var manifestDigest: String
        var config: ImageConfig
        /// The blobs it was made of (config and layers): kept while the image is.
        var blobs: [String]
        /// Bytes of its root file system on disk.
        var size: Int64
    }

    public init(
        root: String, limitBytes: Int64, keepsSetID: Bool = false, maxLayerBytes: Int = 8 << 30,
        mountPoints: [String] = [], maxImageBytes: Int64? = nil, pullDeadline: Duration = .seconds(15 * 60)
    ) throws(OCIError) {
        self.root = root
        self.pullDeadline = pullDeadline
        self.maxImageBytes = maxImageBytes ?? limitBytes
        self.mountPoints = mountPoints
        self.limitBytes = limitBytes
        self.keepsSetID = keepsSetID
        self.maxLayerBytes = maxLayerBytes
        for directory in ["blobs/sha256", "images", "refs"] {
            do {
                try FileManager.default.createDirectory(
                    atPath: root + "/" + directory, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700])
            } catch {
                throw OCIError.storage("cannot create \(root)/\(directory): \(error)")
            }
        }
        // Left by a pull that a crash cut short (no pull runs yet): staging directories and partial downloads.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/images")) ?? []  // try?: none yet
        where name.hasPrefix(".") {
            Self.removeTree(root + "/images/" + name)
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/blobs/sha256")) ?? []  // try?: none
        where name.contains(".partial") {
            unlink(root + "/blobs/sha256/" + name)
        }
    }

    /// The image `digest` names for `platform`, if the cache has it complete: pinned for `holder` (see
    /// ``pull(_:expecting:platform:client:holder:)``).
    public func cached(_ digest: OCIDigest, platform: Platform, holder: String) -> PulledImage? {
        guard let image = lookUp(digest, platform: platform) else { return nil }
        pin(image.manifestDigest, holder: holder)
        return image
    }

    /// The image `digest` names for `platform`, if the cache has it complete; marks it used.
    private func lookUp(_ digest: OCIDigest, platform: Platform) -> PulledImage? {
        let manifestHex: String
        if let pointed = try? String(contentsOfFile: refPath(digest, platform), encoding: .utf8) {  // try?: no ref
            manifestHex = pointed
        } else {
            manifestHex = digest.hex
        }
        guard let manifestDigest = try? OCIDigest(parsing: "sha256:" + manifestHex),  // try?: a torn ref is a miss
            let record = readRecord(manifestDigest)
        else { return nil }
        touch(manifestDigest)
        return PulledImage(
            digest: digest, manifestDigest: manifestDigest, config: record.config,
            rootfs: imagePath(manifestDigest) + "/rootfs", notes: [], bytes: record.size)
    }

    /// Pulls `reference` for `platform` unless the cache has it, and unpacks it. With `expecting`, the reference
    /// must resolve to that digest.
    ///
    /// The image comes back pinned for `holder`: eviction leaves it alone until ``unpin(_:holder:)``. Concurrent
    /// pulls of one reference share one download, which goes on (bounded by the client's timeouts) if a caller is
    /// cancelled: its pin is then the caller's to drop.
    public func pull(
        _ reference: ImageReference, expecting: OCIDigest?, platform: Platform, client: RegistryClient,
        holder: String
    ) async throws(OCIError) -> PulledImage {
        if let digest = reference.digest, let expecting, expecting != digest {
            throw OCIError.digestMismatch(
                what: reference.description, expected: expecting.description, got: digest.description)
        }
        // A reference by digest needs no registry when the cache has it; a tag is always resolved, so a tag that
        // moved away from the expected digest is refused whatever the cache holds.
        if let digest = reference.digest, let hit = lookUp(digest, platform: platform) {
            pin(hit.manifestDigest, holder: holder)
            return hit
        }
        guard !closed else { throw OCIError.transport(reference.registry, "the node is stopping") }
        let key = "\(reference)|\(expecting?.description ?? "")|\(platform)"
        let task: Task<PulledImage, any Error>
        if let running = pulls[key] {
            pulls[key]?.holders.insert(holder)
            task = running.task
        } else {
            task = Task {
                try await self.fetchAndPin(key, reference, expecting: expecting, platform: platform, client: client)
            }
            pulls[key] = (task, [holder])
        }
        do {
            return try await task.value
        } catch let error as OCIError {
            throw error
        } catch {
            throw OCIError.transport(reference.registry, "\(error)")
        }
    }

    /// Cancels the pulls under way and waits for them to end (a download stops at once; an unpack under way
    /// stops at its next read); pulls asked for afterwards are refused.
    public func shutdown() async {
        closed = true
        let running = pulls.values.map(\.task)
        for task in running { task.cancel() }
        for task in running { _ = await task.result }
    }

    /// Keeps `manifestDigest` from eviction while `holder` (a running workload) holds it.
    public func pin(_ manifestDigest: OCIDigest, holder: String) { pins[manifestDigest, default: []].insert(holder) }

    /// `holder` holds no image any more (a recorded workload that will not be restored).
    public func unpinAll(holder: String) {
        for digest in Array(pins.keys) { unpin(digest, holder: holder) }
    }

    /// `holder` no longer holds `manifestDigest` (a second call for one holder changes nothing).
    public func unpin(_ manifestDigest: OCIDigest, holder: String) {
        pins[manifestDigest]?.remove(holder)
        if pins[manifestDigest]?.isEmpty == true { pins[manifestDigest] = nil }
    }

    /// Bytes the cache holds: root file systems and blobs.
    public func usage() -> Int64 {
        images().reduce(0) { $0 + $1.bytes } + blobBytes()
    }

    /// Evicts least recently used images no workload pins until the cache is within its limit, and the blobs only
    /// they used; returns the manifest digests evicted.
    @discardableResult
    public func evict() -> [OCIDigest] {
        var held = images()
        var total = held.reduce(0) { $0 + $1.bytes } + blobBytes()
        var evicted: [OCIDigest] = []
        for image in held.sorted(by: { $0.used < $1.used }) where total > limitBytes {
            guard pins[image.digest] == nil else { continue }
            Self.removeTree(imagePath(image.digest))
            held.removeAll { $0.digest == image.digest }
            total -= image.bytes
            evicted.append(image.digest)
        }
        guard !evicted.isEmpty else { return [] }
        // Kept: the blobs of the images left, and those of pulls under way (partial downloads among them).
        let kept = Set(held.flatMap(\.record.blobs)).union(inFlight.keys)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/blobs/sha256")) ?? []  // try?: none
        where !name.contains(".partial") && !kept.contains("sha256:" + name) {
            unlink(root + "/blobs/sha256/" + name)
        }
        let refs = root + "/refs"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: refs)) ?? [] {  // try?: none yet
            if let pointed = try? String(contentsOfFile: refs + "/" + name, encoding: .utf8),  // try?: torn, removed
                held.contains(where: { $0.digest.hex == pointed })
            {
                continue
            }
            unlink(refs + "/" + name)
        }
        return evicted
    }

    // MARK: - Pulling

    /// Fetches, then pins the image once for each caller waiting, and evicts what no longer fits, with no
    /// suspension between: no eviction can come between an image made and its callers' pins.
    private func fetchAndPin(
        _ key: String, _ reference: ImageReference, expecting: OCIDigest?, platform: Platform, client: RegistryClient
    ) async throws -> PulledImage {
        defer { pulls[key] = nil }
        let deadline = pullDeadline
        let image = try await withThrowingTaskGroup(of: PulledImage?.self) { group in
            group.addTask { try await self.fetch(reference, expecting: expecting, platform: platform, client: client) }
            group.addTask {
                try await Task.sleep(for: deadline)
                return nil
            }
            // The fetch cancelled at the deadline ends at once, downloading or unpacking.
            defer { group.cancelAll() }
            guard let image = try await group.next() ?? nil else {
                throw OCIError.transport(reference.registry, "the pull took longer than \(deadline), and was given up")
            }
            return image
        }
        for holder in pulls[key]?.holders ?? [] { pin(image.manifestDigest, holder: holder) }
        evict()
        return image
    }

    private func fetch(
        _ reference: ImageReference, expecting: OCIDigest?, platform: Platform, client: RegistryClient
    ) async throws -> PulledImage {
        let repository = reference.repository
        var top = try await client.manifest(repository: repository, reference: reference.reference)
        if let expecting, top.digest != expecting {
            throw OCIError.digestMismatch(
                what: reference.description, expected: expecting.description, got: top.digest.description)
        }
        if let hit = lookUp(top.digest, platform: platform) { return hit }
        var manifestFetched = top
        if [MediaType.ociIndex, MediaType.dockerManifestList].contains(top.mediaType) {
            let index = try Self.decode(ImageIndex.self, top.bytes, "the index \(top.digest)")
            let entry = try index.manifest(for: platform)
            // Asked for by digest, so the bytes are checked against it; and they must be the size it says.
            let entryDigest = try OCIDigest(parsing: entry.digest)
            manifestFetched = try await client.manifest(repository: repository, reference: entryDigest.description)
            guard Int64(manifestFetched.bytes.count) == entry.size else {
                throw OCIError.sizeMismatch(
                    what: "the manifest \(entryDigest)", expected: entry.size, got: Int64(manifestFetched.bytes.count))
            }
            top.bytes = []
        } else if ![MediaType.ociManifest, MediaType.dockerManifest].contains(top.mediaType) {
            throw OCIError.badManifest(
                "\(reference) is a \(top.mediaType.isEmpty ? "manifest of no media type" : top.mediaType), "
                    + "not an image manifest or index (a schema 1 manifest must be pushed again as v2 or OCI)")
        }
        let manifest = try Self.decode(
            ImageManifest.self, manifestFetched.bytes, "the manifest \(manifestFetched.digest)")
        let configDigest = try OCIDigest(parsing: manifest.config.digest)
        // What the image makes the node store, said up front by its descriptors (and held to as it arrives).
        var total: Int64 = 0
        for descriptor in [manifest.config] + manifest.layers {
            let (sum, overflow) = total.addingReportingOverflow(descriptor.size)
            guard descriptor.size >= 0, !overflow else {
                throw OCIError.badManifest("\(descriptor.digest) has a size of \(descriptor.size) bytes")
            }
            total = sum
        }
        guard total <= maxImageBytes else {
            throw OCIError.tooLarge(reference.description, total, maxImageBytes)
        }
        let blobs = [manifest.config.digest] + manifest.layers.map(\.digest)
        for blob in blobs { inFlight[blob, default: 0] += 1 }
        defer {
            for blob in blobs {
                inFlight[blob, default: 1] -= 1
                if inFlight[blob] == 0 { inFlight[blob] = nil }
            }
        }
        try await ensureBlob(manifest.config, repository: repository, client: client)
        let configBytes = try Array(Data(contentsOf: URL(fileURLWithPath: blobPath(configDigest))))
        let config = try Self.decode(ImageConfig.self, configBytes, "the image config \(configDigest)")
        if let os = config.os, let architecture = config.architecture,
            !platform.accepts(Platform(os: os, architecture: architecture, variant: nil))
        {
            throw OCIError.platformMissing(platform.description, ["\(os)/\(architecture)"])
        }
        guard config.rootfs.diff_ids.count == manifest.layers.count else {
            throw OCIError.badManifest(
                "the manifest has \(manifest.layers.count) layers but its config lists \(config.rootfs.diff_ids.count)")
        }
        for layer in manifest.layers {
            guard MediaType.layerCompression(layer.mediaType) != nil else {
                throw OCIError.badManifest(
                    "layer \(layer.digest) is a \(layer.mediaType), which this node cannot unpack")
            }
            try await ensureBlob(layer, repository: repository, client: client)
        }
        let manifestDigest = manifestFetched.digest
        var notes: [String] = []
        if readRecord(manifestDigest) == nil {
            notes = try await unpack(manifest, config: config, manifestDigest: manifestDigest)
        }
        if manifestDigest != top.digest {
            try Self.writeAtomically(manifestDigest.hex, to: refPath(top.digest, platform))
        }
        touch(manifestDigest)
        return PulledImage(
            digest: top.digest, manifestDigest: manifestDigest, config: config,
            rootfs: imagePath(manifestDigest) + "/rootfs", notes: notes,
            bytes: readRecord(manifestDigest)?.size ?? total)
    }

    /// Downloads a blob unless the cache has it (a blob is only ever stored once its digest checked out).
    private func ensureBlob(_ descriptor: Descriptor, repository: String, client: RegistryClient) async throws {
        let digest = try OCIDigest(parsing: descriptor.digest)
        let path = blobPath(digest)
        if FileManager.default.fileExists(atPath: path) { return }
        try await client.blob(repository: repository, descriptor, to: path)
    }

    /// Unpacks the layers into a hidden directory on a pool thread, checking each against its diff_id, and moves
    /// it into place when complete; returns what was skipped.
    private func unpack(
        _ manifest: ImageManifest, config: ImageConfig, manifestDigest: OCIDigest
    ) async throws -> [String] {
        let staging = root + "/images/.\(manifestDigest.hex)-\(UUID().uuidString)"
        let layers = try manifest.layers.map { (try OCIDigest(parsing: $0.digest), $0.mediaType) }
        let paths = layers.map { blobPath($0.0) }
        let keepsSetID = keepsSetID
        let limit = maxLayerBytes
        let diffIDs = config.rootfs.diff_ids
        let mountPoints = mountPoints
        let notes: [String]
        let size: Int64
        // Cancelled (the node stopping, the deadline): the unpack stops at its next read, mid-layer.
        let stop = StopFlag()
        do {
            (notes, size) = try await withTaskCancellationHandler {
                try await NIOThreadPool.singleton.runIfActive {
                    try FileManager.default.createDirectory(
                        atPath: staging + "/rootfs", withIntermediateDirectories: true)
                    var unpacker = LayerUnpacker(root: staging + "/rootfs", keepsSetID: keepsSetID)
                    // One budget for the whole image: many small layers cannot add up past it either.
                    var budget = limit
                    for (index, (digest, mediaType)) in layers.enumerated() {
                        let (unpacked, bytes) = try Self.applyLayer(
                            paths[index], mediaType: mediaType, with: &unpacker, limit: budget, stop: stop)
                        budget -= bytes
                        guard unpacked.description == diffIDs[index] else {
                            throw OCIError.digestMismatch(
                                what: "layer \(digest) unpacked", expected: diffIDs[index], got: unpacked.description)
                        }
                    }
                    // A link or file the image has there is replaced: a sandbox mounts over real directories only.
                    for directory in mountPoints {
                        let path = staging + "/rootfs/" + directory
                        var info = stat()
                        if lstat(path, &info) == 0, (info.st_mode & S_IFMT) != S_IFDIR { Self.removeTree(path) }
                        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                            throw OCIError.storage(
                                "cannot make the mount point /\(directory) in the image (errno \(errno))")
                        }
                    }
                    return (unpacker.notes, Self.treeSize(staging + "/rootfs"))
                }
            } onCancel: {
                stop.raise()
            }
            let record = Record(
                manifestDigest: manifestDigest.description, config: config,
                blobs: [manifest.config.digest] + manifest.layers.map(\.digest), size: size)
            try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: staging + "/image.json"))
            if rename(staging, imagePath(manifestDigest)) != 0 {
                // Another pull (by tag, where this one went by digest) made it meanwhile: the same content.
                if readRecord(manifestDigest) != nil {
                    Self.removeTree(staging)
                    return notes
                }
                // A directory without its record is what an eviction left of a file written beside the root
                // meanwhile (a VM's disk): nothing uses it. (A record that cannot be read is not taken for one.)
                var info = stat()
                guard lstat(imagePath(manifestDigest) + "/image.json", &info) != 0, errno == ENOENT else {
                    throw OCIError.storage("cannot move the image into place (errno \(errno))")
                }
                Self.removeTree(imagePath(manifestDigest))
                guard rename(staging, imagePath(manifestDigest)) == 0 else {
                    throw OCIError.storage("cannot move the image into place (errno \(errno))")
                }
            }
        } catch {
            Self.removeTree(staging)
            throw error
        }
        return notes
    }

    private static func applyLayer(
        _ path: String, mediaType: String, with unpacker: inout LayerUnpacker, limit: Int, stop: StopFlag
    ) throws(OCIError) -> (OCIDigest, Int) {
        switch MediaType.layerCompression(mediaType) {
        case .uncompressed:
            let file = try FileSource(path: path, stop: stop)
            return try apply(HashingSource(file, limit: limit), to: &unpacker)
        case .gzip:
            let file = try FileSource(path: path, stop: stop)
            return try apply(HashingSource(try GzipSource(file), limit: limit), to: &unpacker)
        case .zstd:
            let file = try FileSource(path: path, stop: stop)
            return try apply(HashingSource(try ZstdSource(file), limit: limit), to: &unpacker)
        case nil:
            throw OCIError.badManifest(
                "a \(mediaType) layer cannot be unpacked here: push the image with gzip, zstd or uncompressed layers")
        }
    }

    /// Unpacks the tar `source` gives; returns its digest and size (read to its end, padding included).
    private static func apply<Source>(
        _ source: HashingSource<Source>, to unpacker: inout LayerUnpacker
    ) throws(OCIError) -> (OCIDigest, Int) {
        var tar = TarReader(source)
        try unpacker.apply(&tar)
        return (try source.drain(), source.count)
    }

    // MARK: - Files

    private func blobPath(_ digest: OCIDigest) -> String { root + "/blobs/sha256/" + digest.hex }
    private func imagePath(_ digest: OCIDigest) -> String { root + "/images/" + digest.hex }

    private func refPath(_ digest: OCIDigest, _ platform: Platform) -> String {
        root + "/refs/" + digest.hex + "@" + platform.description.replacingOccurrences(of: "/", with: "-")
    }

    private func readRecord(_ manifestDigest: OCIDigest) -> Record? {
        // try?: an image without a readable record is not complete, and is pulled again.
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: imagePath(manifestDigest) + "/image.json")) else {
            return nil
        }
        return try? JSONDecoder().decode(Record.self, from: data)  // try?: as above
    }

    /// Marks an image used now: eviction goes by the record's modification time.
    private func touch(_ manifestDigest: OCIDigest) {
        utimensat(AT_FDCWD, imagePath(manifestDigest) + "/image.json", nil, 0)
    }

    private struct Held {
        var digest: OCIDigest
        var record: Record
        var used: Date
        /// Its root and what sandboxes made beside it (a VM's disk of it).
        var bytes: Int64
    }

    private func images() -> [Held] {
        let directory = root + "/images"
        // try?: no directory yet is no images.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            // try?: a name that is not a digest is not an image (a staging directory, say).
            guard !name.hasPrefix("."), let digest = try? OCIDigest(parsing: "sha256:" + name),
                let record = readRecord(digest)
            else { return nil }
            // try?: evicted meanwhile; it sorts first and is gone already.
            let attributes = try? FileManager.default.attributesOfItem(atPath: "\(directory)/\(name)/image.json")
            // try?: evicted meanwhile: nothing beside it.
            let besides = (try? FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(name)")) ?? []
            let extra = besides.filter { $0 != "rootfs" }.reduce(Int64(0)) {
                $0 + Self.treeSize("\(directory)/\(name)/\($1)")
            }
            return Held(
                digest: digest, record: record, used: attributes?[.modificationDate] as? Date ?? .distantPast,
                bytes: record.size + extra)
        }
    }

    private func blobBytes() -> Int64 { Self.treeSize(root + "/blobs") }

    private static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], _ what: String) throws(OCIError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw OCIError.badManifest("\(what) is not valid JSON of its kind: \(error)")
        }
    }

    private static func writeAtomically(_ text: String, to path: String) throws(OCIError) {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw OCIError.storage("cannot write \(path): \(error)")
        }
    }

    /// Bytes in regular files under `path`, links not followed.
    public static func treeSize(_ path: String) -> Int64 {
        var total: Int64 = 0
        var info = stat()
        guard lstat(path, &info) == 0 else { return 0 }
        if (info.st_mode & S_IFMT) == S_IFREG { return Int64(info.st_blocks) * 512 }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { return 0 }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {  // try?: unreadable counts 0
            total += treeSize(path + "/" + name)
        }
        return total
    }

    /// Removes a tree that may hold read-only directories (an image's), never following a link.
    public static func removeTree(_ path: String) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            chmod(path, 0o700)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {  // try?: emptied below
                removeTree(path + "/" + name)
            }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
