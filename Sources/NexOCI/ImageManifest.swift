/// The media types a registry is asked for, and told apart by: OCI's and Docker's v2 (schema 2) manifests and
/// indexes. Asking without the OCI types makes distribution 2.8 answer 404 for an OCI manifest; asking without
/// Docker's makes it rewrite a Docker manifest to schema 1, under another digest.
public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    /// The `Accept` header of a manifest request.
    public static let manifestAccept = [ociManifest, ociIndex, dockerManifest, dockerManifestList].joined(
        separator: ", ")

    /// How a layer's bytes are packed.
    public enum LayerCompression: Sendable, Equatable {
        case uncompressed, gzip, zstd
    }

    /// The compression of a layer of `mediaType`; nil for a type that is not a layer this node can apply.
    public static func layerCompression(_ mediaType: String) -> LayerCompression? {
        switch mediaType {
        case "application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar": .uncompressed
        case "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip":
            .gzip
        case "application/vnd.oci.image.layer.v1.tar+zstd": .zstd
        default: nil
        }
    }
}

/// A pointer to content: its media type, digest and size (checked against the bytes received).
public struct Descriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    public var digest: String
    public var size: Int64
    /// In an index: which platform the manifest is for.
    public var platform: Platform?
    public var annotations: [String: String]?

    public init(mediaType: String, digest: String, size: Int64, platform: Platform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.platform = platform
    }
}

/// An operating system and architecture (and variant, such as `v7` for arm).
public struct Platform: Codable, Sendable, Equatable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?

    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    public var description: String { "\(os)/\(architecture)" + (variant.map { "/\($0)" } ?? "") }

    /// Reads `os/arch[/variant]` (as `--platform` takes it).
    public init(parsing text: String) throws(OCIError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), !parts.contains(where: \.isEmpty) else {
            throw OCIError.badPlatform(text)
        }
        self.init(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil)
    }

    /// This machine's platform, as images name it.
    public static var current: Platform {
        #if arch(x86_64)
            Platform(os: "linux", architecture: "amd64")
        #elseif arch(arm64)
            Platform(os: "linux", architecture: "arm64", variant: "v8")
        #else
            Platform(os: "linux", architecture: "unknown")
        #endif
    }

    /// Whether an index entry for `other` runs here: same os and architecture, and the variant when both
    /// name one (`arm64` without a variant is `v8`).
    public func accepts(_ other: Platform) -> Bool {
        guard os == other.os, architecture == other.architecture else { return false }
        guard let mine = variant, let theirs = other.variant else { return true }
        return mine == theirs
    }
}

/// An image manifest (OCI or Docker v2): the config and the layers, bottom first.
public struct ImageManifest: Codable, Sendable, Equatable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]
}

/// An image index (OCI) or manifest list (Docker): one manifest per platform.
public struct ImageIndex: Codable, Sendable, Equatable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [Descriptor]

    /// The manifest for `platform`; attestation entries (`unknown/unknown`) never match. The error lists
    /// the platforms the index has.
    public func manifest(for platform: Platform) throws(OCIError) -> Descriptor {
        let candidates = manifests.filter { entry in
            guard let p = entry.platform, p.os != "unknown", p.architecture != "unknown" else { return false }
            return platform.accepts(p)
        }
        // An exact variant first, then one that names none.
        if let exact = candidates.first(where: { $0.platform?.variant == platform.variant }) { return exact }
        if let first = candidates.first { return first }
        let offered = manifests.compactMap(\.platform).filter { $0.os != "unknown" }.map(\.description)
        throw OCIError.platformMissing(platform.description, offered)
    }
}

/// The parts of an image's config a node runs it by.
public struct ImageConfig: Codable, Sendable, Equatable {
    public var architecture: String?
    public var os: String?
    public var config: Settings?
    public var rootfs: RootFS

    public struct Settings: Codable, Sendable, Equatable {
        public var Entrypoint: [String]?
        public var Cmd: [String]?
        public var Env: [String]?
        public var WorkingDir: String?
        public var User: String?
    }

    /// The uncompressed digests of the layers, bottom first: each layer is checked against its own.
    public struct RootFS: Codable, Sendable, Equatable {
        public var type: String
        public var diff_ids: [String]
    }
}
