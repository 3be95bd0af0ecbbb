import ArgumentParser
import Foundation
import NIOCore
import NexModels
import NexOCI

/// How `devrun` and `run` resolve an `oci://` image: a tag becomes a digest before the deploy, so what runs
/// is immutable and the same on every node.
struct ImageOptions: ParsableArguments {
    enum PullPolicy: String, ExpressibleByArgument, CaseIterable {
        /// Ask the registry what the tag names now.
        case always
        /// Use the digest this machine resolved the tag to last time, asking the registry only when it has none.
        case missing
    }

    @Option(help: "For an oci:// image: when to ask the registry what a tag names (always, missing).")
    var pull: PullPolicy = .always

    @Option(help: "For an oci:// image index: deploy this platform's image (OS/ARCH[/VARIANT]), not each node's own.")
    var platform: String?

    @Flag(help: "For an oci:// image: reach the registry over plain HTTP (a registry on loopback without TLS).")
    var insecureRegistry = false

    /// Where tags resolved with `--pull missing` are remembered.
    static var tagFile: String { DeveloperKeys.home + "/image-tags.json" }

    /// The image's location by digest, and that digest: a tag is resolved at the registry (or, with `--pull
    /// missing`, from this machine's memory of it); `--platform` picks one image of an index.
    func resolve(_ text: String) async throws -> (location: WorkloadLocation, digest: OCIDigest) {
        var reference = try ImageReference(parsing: text)
        let client = try RegistryClient(
            registry: reference.registry,
            settings: try Self.settings(for: reference.registry, insecure: insecureRegistry),
            dialer: Self.anyAddress)
        // Remembered per platform asked for: a platform's image is not the index.
        let memoryKey = reference.description + (platform.map { " " + $0 } ?? "")
        let remembered = pull == .missing ? Self.rememberedTags()[memoryKey] : nil
        var digest = reference.digest
        if digest == nil, let remembered { digest = try OCIDigest(parsing: remembered) }
        if let platform {
            let wanted = try Platform(parsing: platform)
            let top = try await client.manifest(
                repository: reference.repository, reference: digest?.description ?? reference.reference)
            if [MediaType.ociIndex, MediaType.dockerManifestList].contains(top.mediaType) {
                let index = try JSONDecoder().decode(ImageIndex.self, from: Data(top.bytes))
                digest = try OCIDigest(parsing: try index.manifest(for: wanted).digest)
            } else {
                digest = top.digest
            }
        } else if digest == nil {
            digest = try await client.manifest(repository: reference.repository, reference: reference.reference).digest
        }
        guard let digest else { throw CLIError("\(text) resolved to no digest") }
        if reference.digest == nil {
            Self.remember(memoryKey, digest)
            Output.notice("\(reference) is \(digest)")
        }
        reference.tag = nil
        reference.digest = digest
        guard let location = WorkloadLocation(url: reference.description) else {
            throw CLIError("\(reference) is not a location")
        }
        return (location, digest)
    }

    /// The workload name an image gets: its repository's last component (`tools/busybox` → `busybox`).
    static func workloadName(for text: String) -> String? {
        guard let reference = try? ImageReference(parsing: text) else { return nil }  // try?: not an image
        let base = reference.repository.split(separator: "/").last.map(String.init) ?? reference.repository
        return base.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
    }

    /// The CLI connects wherever the user's machine can reach (the node applies its own policy when it pulls).
    static let anyAddress: RegistryClient.Dialer = { host, port in
        [try SocketAddress.makeAddressResolvingHost(host, port: port)]
    }

    /// Credentials for `registry` from the docker `config.json` (`$DOCKER_CONFIG`, else `~/.docker`): `auths`
    /// only.
    static func settings(for registry: String, insecure: Bool) throws -> RegistryClient.Settings {
        var settings = RegistryClient.Settings(insecure: insecure)
        let directory =
            ProcessInfo.processInfo.environment["DOCKER_CONFIG"]
            ?? (NSHomeDirectory() + "/.docker")
        guard let data = FileManager.default.contents(atPath: directory + "/config.json") else { return settings }
        struct DockerConfig: Decodable {
            struct Auth: Decodable { var auth: String? }
            var auths: [String: Auth]?
            var credHelpers: [String: String]?
            var credsStore: String?
        }
        let config: DockerConfig
        do { config = try JSONDecoder().decode(DockerConfig.self, from: data) } catch {
            throw CLIError("\(directory)/config.json cannot be read: \(error)")
        }
        if let encoded = config.auths?[registry]?.auth, let decoded = Data(base64Encoded: encoded),
            let text = String(data: decoded, encoding: .utf8), let colon = text.firstIndex(of: ":")
        {
            settings.username = String(text[..<colon])
            settings.password = String(text[text.index(after: colon)...])
        } else if config.credHelpers?[registry] != nil || config.credsStore != nil {
            Output.say(
                "note: credential helpers (credHelpers, credsStore) in \(directory)/config.json are not supported: "
                    + "put the registry's credentials under auths")
        }
        return settings
    }

    private static func rememberedTags() -> [String: String] {
        guard let data = FileManager.default.contents(atPath: tagFile) else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]  // try?: unreadable is empty
    }

    private static func remember(_ tag: String, _ digest: OCIDigest) {
        var tags = rememberedTags()
        tags[tag] = digest.description
        // try?: a memory this machine cannot write only costs the next `--pull missing` a registry request.
        try? JSONEncoder().encode(tags).write(to: URL(fileURLWithPath: tagFile), options: .atomic)
    }
}
