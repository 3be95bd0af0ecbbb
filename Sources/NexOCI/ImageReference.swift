/// An image as a deploy's `location` names it: `oci://HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]`.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    /// The registry, `HOST` or `HOST:PORT` (lowercased).
    public var registry: String
    /// The repository, such as `library/busybox`.
    public var repository: String
    /// The tag, when the reference names one (and no digest).
    public var tag: String?
    /// The digest, when the reference pins one.
    public var digest: OCIDigest?

    /// The scheme of an image location.
    public static let scheme = "oci://"

    /// What the registry is asked for: the digest when pinned, else the tag (`latest` when none is given).
    public var reference: String { digest?.description ?? tag ?? "latest" }

    public var description: String {
        Self.scheme + registry + "/" + repository + (digest.map { "@\($0)" } ?? ":\(tag ?? "latest")")
    }

    /// Parses `text`; the error says what is wrong and what a good one looks like.
    public init(parsing text: String) throws(OCIError) {
        guard text.hasPrefix(Self.scheme) else {
            throw OCIError.badReference(text, "it does not start with oci://")
        }
        let rest = text.dropFirst(Self.scheme.count)
        guard let slash = rest.firstIndex(of: "/") else {
            throw OCIError.badReference(text, "it names no repository after the registry")
        }
        let registry = rest[..<slash].lowercased()
        guard Self.isRegistry(registry) else {
            throw OCIError.badReference(text, "\"\(registry)\" is not a HOST or HOST:PORT")
        }
        var path = rest[rest.index(after: slash)...]
        if let at = path.firstIndex(of: "@") {
            digest = try OCIDigest(parsing: String(path[path.index(after: at)...]))
            path = path[..<at]
            // `repo:tag@digest`: the digest decides, as `docker pull` reads it.
            if let colon = path.lastIndex(of: ":"), !path[colon...].contains("/") { path = path[..<colon] }
        } else if let colon = path.lastIndex(of: ":"), !path[colon...].contains("/") {
            let tag = String(path[path.index(after: colon)...])
            guard Self.isTag(tag) else {
                throw OCIError.badReference(text, "\"\(tag)\" is not a tag (letters, digits, _ . -; at most 128)")
            }
            self.tag = tag
            path = path[..<colon]
        }
        guard Self.isRepository(path) else {
            throw OCIError.badReference(
                text, "\"\(path)\" is not a repository (lowercase path components of letters, digits and . _ -)")
        }
        self.registry = registry
        self.repository = String(path)
    }

    private static func isRegistry(_ text: String) -> Bool {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard !text.isEmpty, parts.count <= 2 else { return false }
        if parts.count == 2 {
            guard parts[1].utf8.allSatisfy({ (48...57).contains($0) }), let port = Int(parts[1]),
                (1...65535).contains(port)
            else { return false }
        }
        return parts[0].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
            && !parts[0].isEmpty
    }

    private static func isTag(_ tag: String) -> Bool {
        guard let first = tag.first, (1...128).contains(tag.count), first != ".", first != "-" else { return false }
        return tag.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    private static func isRepository(_ path: Substring) -> Bool {
        guard !path.isEmpty, path.count <= 255 else { return false }
        return path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.first, let last = part.last else { return false }
            return first.isASCII && (first.isLowercase || first.isNumber) && (last.isLowercase || last.isNumber)
                && part.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }
        }
    }
}
