/// Why an image cannot be had or unpacked: each says what and, where it can, what to do.
public enum OCIError: Error, Sendable, Equatable, CustomStringConvertible {
    case badReference(String, String)
    case badDigest(String, String)
    /// A tar archive that cannot be read (truncated, a bad header checksum…).
    case badArchive(String)
    /// A layer entry that would leave the root file system, by its path or through a link.
    case escapes(entry: String, String)
    /// A gzip stream that cannot be read.
    case badCompression(String)
    /// A platform that is not `os/arch[/variant]`.
    case badPlatform(String)
    /// An index without a manifest for the node's platform: the platforms it has.
    case platformMissing(String, [String])
    /// The registry cannot be reached, or broke off: the host and why.
    case transport(String, String)
    /// The node's registry policy or egress policy does not let it reach this registry.
    case refused(String, String)
    /// The registry answered 401 or 403: the registry, and what to do.
    case unauthorized(String, String)
    /// The registry has no such manifest or blob.
    case notFound(String)
    /// Content whose bytes hash to another digest than the one that named it (or that the deploy pinned).
    case digestMismatch(what: String, expected: String, got: String)
    /// Content larger or smaller than its descriptor says.
    case sizeMismatch(what: String, expected: Int64, got: Int64)
    /// Any other answer of the registry: the status and what it said.
    case registry(Int, String)
    /// A manifest, index or config that cannot be read.
    case badManifest(String)
    /// The node's own disk: the cache cannot be written.
    case storage(String)
    /// An image larger than the node takes: the reference, its bytes and the limit.
    case tooLarge(String, Int64, Int64)
    /// Work given up part way (the node stopping, or a pull past its deadline): why.
    case stopped(String)

    public var description: String {
        switch self {
        case .badReference(let text, let why):
            "\(text) is not an image reference: \(why); write oci://HOST[:PORT]/REPO[:TAG] or oci://HOST[:PORT]/REPO@sha256:DIGEST"
        case .badDigest(let text, let why): "\(text) is not a digest: \(why)"
        case .badArchive(let why): "the layer is not a readable tar archive: \(why)"
        case .escapes(let entry, let why): "the layer's entry \(entry) is refused: \(why)"
        case .badCompression(let why): "the layer cannot be decompressed: \(why)"
        case .badPlatform(let text): "\(text) is not a platform: write OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64"
        case .platformMissing(let wanted, let offered):
            "the image has no \(wanted) manifest; it has "
                + (offered.isEmpty ? "none for any platform" : offered.joined(separator: ", "))
                + ": push one for \(wanted), or choose another with --platform"
        case .transport(let host, let why): "cannot fetch from \(host): \(why)"
        case .refused(let registry, let why): "the node does not pull from \(registry): \(why)"
        case .unauthorized(let registry, let why): "\(registry) refused the credentials: \(why)"
        case .notFound(let what): "\(what) is not in the registry: check the repository, tag and digest"
        case .digestMismatch(let what, let expected, let got):
            "\(what) should be \(expected) but its bytes hash to \(got): it was changed, or the reference is wrong"
        case .sizeMismatch(let what, let expected, let got):
            "\(what) should be \(expected) bytes but \(got) arrived"
        case .registry(let status, let message): "the registry answered \(status): \(message)"
        case .badManifest(let why): "the image cannot be read: \(why)"
        case .storage(let why):
            "the image cache cannot be written: \(why); free space under the node's home or lower oci_cache_limit_mb"
        case .tooLarge(let reference, let bytes, let limit):
            "\(reference) is \(bytes >> 20) MiB, more than the \(limit >> 20) MiB this node takes for one image "
                + "(oci_cache_limit_mb, node_limits.max_workload_bytes): push a smaller image or raise the limit"
        case .stopped(let why): "the pull was stopped: \(why)"
        }
    }
}
