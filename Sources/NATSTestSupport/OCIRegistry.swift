import Foundation
import NexProcess

/// A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry, installed by
/// `scripts/setup.sh`) on an ephemeral loopback port, storing in a directory of its own. It dies with this
/// process; ``stop()`` ends it sooner.
public final class OCIRegistry: Sendable {
    /// How clients must authenticate.
    public enum Auth: Sendable {
        case none
        /// htpasswd basic auth: one user.
        case basic(username: String, password: String)
        /// Bearer tokens from `realm`, signed by the key of `certificate` (a PEM file) for `service`.
        case token(realm: String, service: String, issuer: String, certificate: String)
    }

    /// `127.0.0.1:PORT`.
    public let address: String
    /// Where it stores repositories and blobs.
    public let storage: String
    private let server: LoggedServer
    /// Its configuration (and its storage, unless the caller gave one), removed by ``stop()``.
    private let directory: String

    private init(address: String, storage: String, server: LoggedServer, directory: String) {
        self.address = address
        self.storage = storage
        self.server = server
        self.directory = directory
    }

    /// A registry for the length of `body`, stopped (and its directory removed) afterwards, whatever happens.
    public static func with<T>(
        storage: String? = nil, auth: Auth = .none, _ body: (OCIRegistry) async throws -> T
    ) async throws -> T {
        let registry = try await start(storage: storage, auth: auth)
        do {
            let result = try await body(registry)
            await registry.stop()
            return result
        } catch {
            await registry.stop()
            throw error
        }
    }

    public static var binary: String? {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/docker-registry") ? "/usr/bin/docker-registry" : nil
    }

    /// Starts a registry on `storage` (a new directory when nil: reuse one to serve what another pushed).
    public static func start(storage: String? = nil, auth: Auth = .none) async throws -> OCIRegistry {
        guard let binary else {
            throw TestEnvironment.Failure("docker-registry not found at /usr/bin/docker-registry: run scripts/setup.sh")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("registry-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let storage = storage ?? directory + "/storage"
        var authSection = ""
        switch auth {
        case .none:
            break
        case .basic(let username, let password):
            let hash = try await TestEnvironment.run("/usr/bin/htpasswd", ["-nbB", username, password])
            try hash.trimmingCharacters(in: .whitespacesAndNewlines).write(
                toFile: directory + "/htpasswd", atomically: true, encoding: .utf8)
            authSection = "auth:\n  htpasswd:\n    realm: test\n    path: \(directory)/htpasswd\n"
        case .token(let realm, let service, let issuer, let certificate):
            authSection = """
                auth:
                  token:
                    realm: \(realm)
                    service: \(service)
                    issuer: \(issuer)
                    rootcertbundle: \(certificate)

                """
        }
        let config = """
            version: 0.1
            log:
              level: info
            storage:
              filesystem:
                rootdirectory: \(storage)
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:0
            \(authSection)
            """
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        let server = try await LoggedServer.start(
            binary, ["serve", directory + "/config.yml"], directory: directory, name: "docker-registry"
        ) { line in
            guard let range = line.range(of: "listening on ") else { return nil }
            return String(line[range.upperBound...].prefix { $0 != "\"" && !$0.isWhitespace })
        }
        return OCIRegistry(address: server.address, storage: storage, server: server, directory: directory)
    }

    /// The file holding blob `hex` (what a test tampers with).
    public func blobFile(_ hex: String) -> String {
        "\(storage)/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data"
    }

    /// Stops it and removes its directory (a storage the caller gave stays).
    public func stop() async {
        await server.stop()
        try? FileManager.default.removeItem(atPath: directory)  // best effort: a temp folder left fails no test
    }
}
