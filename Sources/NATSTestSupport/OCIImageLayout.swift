import Crypto
import Foundation

/// An OCI image layout on disk that tests build images in with Debian's `umoci` (from `busybox-static`) and push
/// to a registry with `skopeo`, as a user would; all three are installed by `scripts/setup.sh`.
public struct OCIImageLayout: Sendable {
    /// The layout's directory.
    public let path: String

    public static var toolsAvailable: Bool {
        ["/usr/bin/umoci", "/usr/bin/skopeo", "/bin/busybox"].allSatisfy(FileManager.default.isExecutableFile)
    }

    /// A new layout in `directory` with image `tag`: busybox at `/bin/busybox`, `/bin/sh` and a few applets
    /// linking to it (absolute links, as real images have), the `files` given (path → text), the host files
    /// `copies` names (path in the image → path on the host), and the config's entrypoint, cmd, env, user and
    /// working directory.
    public static func busybox(
        in directory: String, tag: String = "base", files: [String: String] = [:], copies: [String: String] = [:],
        entrypoint: [String] = [],
        cmd: [String] = [], env: [String] = [], user: String? = nil, workingDirectory: String? = nil,
        architecture: String = "amd64"
    ) async throws -> OCIImageLayout {
        let layout = OCIImageLayout(path: directory + "/layout")
        let bundle = directory + "/bundle-\(tag)"
        try await umoci(["init", "--layout", layout.path])
        try await umoci(["new", "--image", "\(layout.path):\(tag)"])
        try await umoci(["unpack", "--image", "\(layout.path):\(tag)", bundle])
        let rootfs = bundle + "/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
        for applet in ["sh", "cat", "echo", "id", "sleep", "ls", "env"] {
            try FileManager.default.createSymbolicLink(
                atPath: rootfs + "/bin/" + applet, withDestinationPath: "/bin/busybox")
        }
        for (file, content) in files {
            let full = rootfs + "/" + file
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: full, atomically: false, encoding: .utf8)
        }
        for (file, source) in copies {
            let full = rootfs + "/" + file
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source, toPath: full)
        }
        try await umoci(["repack", "--image", "\(layout.path):\(tag)", bundle])
        var config = ["config", "--image", "\(layout.path):\(tag)", "--os", "linux", "--architecture", architecture]
        config += entrypoint.flatMap { ["--config.entrypoint", $0] }
        config += cmd.flatMap { ["--config.cmd", $0] }
        config += env.flatMap { ["--config.env", $0] }
        if let user { config += ["--config.user", user] }
        if let workingDirectory { config += ["--config.workingdir", workingDirectory] }
        try await umoci(config)
        try await umoci(["gc", "--layout", layout.path])
        return layout
    }

    /// Tags `tag` as `from` with one more layer on top: `tar` (an uncompressed tar file, hostile or not, taken as
    /// it is).
    public func addLayer(_ tar: String, from: String, as tag: String) async throws {
        try await Self.umoci(["raw", "add-layer", "--image", "\(path):\(from)", "--tag", tag, tar])
    }

    /// The digest of the manifest (or index) `tag` names, from the layout's `index.json`.
    public func digest(of tag: String) throws -> String {
        try entry(tag)["digest"] as? String ?? { throw TestEnvironment.Failure("\(tag) has no digest") }()
    }

    /// The path of blob `digest` (`sha256:…`) in the layout.
    public func blob(_ digest: String) -> String { path + "/blobs/sha256/" + digest.dropFirst("sha256:".count) }

    /// Writes an image index naming `tag`'s manifest for each of `platforms` (`os/arch[/variant]`; `unknown/unknown`
    /// for an attestation entry) and tags it `indexTag`; returns the index's digest.
    @discardableResult
    public func makeIndex(of tag: String, platforms: [String], as indexTag: String) throws -> String {
        let manifest = try entry(tag)
        let entries: [[String: Any]] = platforms.map { platform in
            let parts = platform.split(separator: "/").map(String.init)
            var described: [String: Any] = ["os": parts[0], "architecture": parts[1]]
            if parts.count > 2 { described["variant"] = parts[2] }
            return [
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest["digest"] as Any,
                "size": manifest["size"] as Any, "platform": described,
            ]
        }
        let index: [String: Any] = [
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries,
        ]
        let bytes = try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys])
        let digest = "sha256:" + Self.sha256(bytes)
        try bytes.write(to: URL(fileURLWithPath: blob(digest)))
        var top = try Self.readJSON(path + "/index.json")
        var list = top["manifests"] as? [[String: Any]] ?? []
        list.append([
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": bytes.count,
            "annotations": ["org.opencontainers.image.ref.name": indexTag],
        ])
        top["manifests"] = list
        try JSONSerialization.data(withJSONObject: top).write(to: URL(fileURLWithPath: path + "/index.json"))
        return digest
    }

    /// Pushes `tag` to `registry` as `repository:remoteTag` with skopeo (`format` `v2s2` for Docker's schema 2;
    /// `all` for every image an index names; `credentials` as `USER:PASSWORD`; `compression` `zstd` to have
    /// skopeo recompress the layers).
    public func push(
        _ tag: String, to registry: OCIRegistry, as repository: String, tag remoteTag: String,
        format: String? = nil, all: Bool = false, credentials: String? = nil, compression: String? = nil
    ) async throws {
        var arguments = ["copy", "--quiet", "--dest-tls-verify=false"]
        if let credentials { arguments += ["--dest-creds", credentials] }
        if let format { arguments += ["--format", format] }
        if let compression { arguments += ["--dest-compress-format", compression] }
        if all { arguments.append("--all") }
        arguments += ["oci:\(path):\(tag)", "docker://\(registry.address)/\(repository):\(remoteTag)"]
        try await TestEnvironment.run("/usr/bin/skopeo", arguments, environment: ["HOME": path])
    }

    private func entry(_ tag: String) throws -> [String: Any] {
        let index = try Self.readJSON(path + "/index.json")
        let found = (index["manifests"] as? [[String: Any]] ?? []).last { entry in
            (entry["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == tag
        }
        guard let found else { throw TestEnvironment.Failure("the layout has no \(tag)") }
        return found
    }

    private static func readJSON(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestEnvironment.Failure("\(path) is not a JSON object")
        }
        return object
    }

    private static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    private static func umoci(_ arguments: [String]) async throws {
        try await TestEnvironment.run("/usr/bin/umoci", arguments)
    }
}
