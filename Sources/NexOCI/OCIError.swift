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
        }
    }
}
