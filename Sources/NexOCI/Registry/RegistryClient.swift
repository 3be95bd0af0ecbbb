import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// A client of one registry on the OCI distribution API: manifests and blobs, with anonymous, bearer-token and
/// basic auth, retries of transient failures, and every digest computed over the bytes received.
public struct RegistryClient: Sendable {
    /// How the node reaches one registry (an `oci_registries` entry).
    public struct Settings: Sendable, Equatable {
        /// Plain HTTP instead of HTTPS.
        public var insecure = false
        /// Basic credentials: sent to a registry that asks for them, and to its token service.
        public var username: String?
        public var password: String?
        /// PEM roots to trust for this registry instead of the system's.
        public var caFile: String?

        public init(insecure: Bool = false, username: String? = nil, password: String? = nil, caFile: String? = nil) {
            self.insecure = insecure
            self.username = username
            self.password = password
            self.caFile = caFile
        }
    }

    /// A manifest or index as received: its bytes, their digest and what the registry says it is.
    public struct FetchedManifest: Sendable {
        public var bytes: [UInt8]
        public var digest: OCIDigest
        public var mediaType: String
    }

    /// The addresses a host may be reached at (the node's policy decides); throws to refuse it.
    public typealias Dialer = @Sendable (_ host: String, _ port: Int) async throws -> [SocketAddress]

    /// `HOST` or `HOST:PORT`.
    public let registry: String
    public let settings: Settings
    let transport: RegistryTransport
    private let auth: RegistryAuth

    /// Attempts of a request that fails in transit or with 429/5xx, the first included.
    public var attempts = 3
    /// The largest manifest or index accepted.
    public static let maxManifestBytes = 4 << 20

    public init(registry: String, settings: Settings = .init(), dialer: @escaping Dialer) throws(OCIError) {
        self.registry = registry
        self.settings = settings
        var tls: TLSConfiguration?
        if let caFile = settings.caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw OCIError.refused(registry, "its ca_file \(caFile) cannot be read")
            }
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(caFile)
            tls = configuration
        }
        transport = RegistryTransport(dialer: dialer, tls: tls)
        auth = RegistryAuth(settings: settings)
    }

    var baseURL: String { (settings.insecure ? "http://" : "https://") + registry }

    /// The manifest or index `reference` (a tag or a digest) names in `repository`. A digest reference is checked
    /// against the bytes.
    public func manifest(repository: String, reference: String) async throws(OCIError) -> FetchedManifest {
        let what = "\(registry)/\(repository):\(reference)"
        let url = "\(baseURL)/v2/\(repository)/manifests/\(reference)"
        var body: [UInt8] = []
        let head = try await perform(
            url: url, repository: repository, what: what, accept: MediaType.manifestAccept,
            start: { body.removeAll() },
            body: { chunk throws(OCIError) in
                guard body.count + chunk.readableBytes <= Self.maxManifestBytes else {
                    throw OCIError.badManifest("\(what) is larger than \(Self.maxManifestBytes >> 20) MiB")
                }
                body.append(contentsOf: chunk.readableBytesView)
            })
        let digest = OCIDigest(of: body)
        if reference.hasPrefix("sha256:"), digest.description != reference {
            throw OCIError.digestMismatch(what: what, expected: reference, got: digest.description)
        }
        let contentType = head.headers["content-type"]?.split(separator: ";").first.map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        let mediaType = Self.declaredMediaType(body) ?? contentType ?? ""
        return FetchedManifest(bytes: body, digest: digest, mediaType: mediaType)
    }

    /// Downloads the blob `descriptor` names to `path`, checking its size and digest as it arrives; nothing is at
    /// `path` unless both match.
    public func blob(repository: String, _ descriptor: Descriptor, to path: String) async throws(OCIError) {
        let digest = try OCIDigest(parsing: descriptor.digest)
        let what = "blob \(digest) of \(registry)/\(repository)"
        // A name of its own: two pulls that share a layer may download it at once.
        let partial = path + ".partial-" + UUID().uuidString
        let writer = BlobWriter()
        defer { writer.close() }
        do {
            _ = try await perform(
                url: "\(baseURL)/v2/\(repository)/blobs/\(digest)", repository: repository, what: what, accept: nil,
                start: { () throws(OCIError) in try writer.open(partial) },
                body: { chunk throws(OCIError) in
                    try writer.write(chunk)
                    guard writer.count <= descriptor.size else {
                        throw OCIError.sizeMismatch(what: what, expected: descriptor.size, got: writer.count)
                    }
                })
            try await writer.finish()
        } catch {
            unlink(partial)
            throw error
        }
        guard writer.count == descriptor.size else {
            unlink(partial)
            throw OCIError.sizeMismatch(what: what, expected: descriptor.size, got: writer.count)
        }
        let got = writer.digest
        guard got == digest else {
            unlink(partial)
            throw OCIError.digestMismatch(what: what, expected: digest.description, got: got.description)
        }
        guard rename(partial, path) == 0 else {
            unlink(partial)
            throw OCIError.storage("cannot move the blob into place at \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The mediaType a manifest names in its JSON, if it names one.
    private static func declaredMediaType(_ bytes: [UInt8]) -> String? {
        struct Peek: Decodable { var mediaType: String? }
        return (try? JSONDecoder().decode(Peek.self, from: Data(bytes)))?.mediaType  // try?: not JSON is told later
    }

    /// Sends a GET, answering auth challenges, following redirects and retrying transient failures. `start` is
    /// called before the body of a 2xx answer (again on each attempt), `body` with each of its pieces.
    func perform(
        url: String, repository: String, what: String, accept: String?,
        start: () throws(OCIError) -> Void, body: (ByteBuffer) throws(OCIError) -> Void
    ) async throws(OCIError) -> RegistryTransport.Head {
        guard var current = URL(string: url) else { throw OCIError.transport(registry, "\(url) is not a URL") }
        let origin = Origin(current)
        var redirects = 0
        var attempt = 1
        var answeredChallenge = false
        let scope = "repository:\(repository):pull"
        while true {
            var request = RegistryTransport.Request(url: current)
            if let accept { request.headers.append(("accept", accept)) }
            // Credentials go to the registry itself only, never to a host a redirect names.
            if Origin(current) == origin, let authorization = auth.authorization(scope: scope) {
                request.headers.append(("authorization", authorization))
            }
            let outcome: Outcome
            do {
                outcome = try await send(request, start: start, body: body)
            } catch let error as OCIError {
                if case .transport = error, attempt < attempts {
                    attempt += 1
                    try await backOff(attempt)
                    continue
                }
                throw error
            } catch is CancellationError {
                throw OCIError.transport(registry, "the pull was cancelled")
            } catch {
                guard attempt < attempts else {
                    // A TLS failure is most often a private CA: say where it goes.
                    let hint =
                        "\(error)".contains("SSL")
                        ? "; a registry whose certificate is not from a public CA needs ca_file in its oci_registries entry"
                        : ""
                    throw OCIError.transport(registry, "\(error)" + hint)
                }
                attempt += 1
                try await backOff(attempt)
                continue
            }
            let head = outcome.head
            switch head.status {
            case 200..<300:
                return head
            case 301, 302, 303, 307, 308:
                redirects += 1
                guard redirects <= 5, let location = head.headers["location"],
                    let next = URL(string: location, relativeTo: current)?.absoluteURL
                else { throw OCIError.registry(head.status, "a redirect without a usable location, or too many") }
                current = next
            case 401 where !answeredChallenge && Origin(current) == origin:
                answeredChallenge = true
                guard let header = head.headers["www-authenticate"], let challenge = AuthChallenge(header: header)
                else { throw OCIError.unauthorized(registry, "it answered 401 without a WWW-Authenticate challenge") }
                try await auth.answer(challenge, scope: scope, registry: registry, via: self)
            case 401, 403:
                throw OCIError.unauthorized(
                    registry,
                    auth.hasCredentials
                        ? "check the username and password in the node's oci_registries entry for it"
                        : "it needs credentials: add a username and password to the node's oci_registries entry for it"
                )
            case 404:
                throw OCIError.notFound(what)
            case 429, 500..<600:
                guard attempt < attempts else {
                    throw OCIError.registry(head.status, Self.errorMessage(outcome.errorBody))
                }
                attempt += 1
                try await backOff(attempt)
            default:
                throw OCIError.registry(head.status, Self.errorMessage(outcome.errorBody))
            }
        }
    }

    private struct Outcome {
        var head: RegistryTransport.Head
        var errorBody: [UInt8]
    }

    /// One exchange: a 2xx body goes to `body`; any other body is kept (up to 64 KiB) for the error message.
    private func send(
        _ request: RegistryTransport.Request, start: () throws(OCIError) -> Void,
        body: (ByteBuffer) throws(OCIError) -> Void
    ) async throws -> Outcome {
        var head: RegistryTransport.Head?
        var errorBody: [UInt8] = []
        try await transport.exchange(
            request,
            head: { received in
                head = received
                if (200..<300).contains(received.status) { try start() }
            },
            body: { chunk in
                if let head, (200..<300).contains(head.status) {
                    try body(chunk)
                } else if errorBody.count < 64 << 10 {
                    errorBody.append(contentsOf: chunk.readableBytesView.prefix((64 << 10) - errorBody.count))
                }
            })
        guard let head else { throw OCIError.transport(registry, "no response") }
        return Outcome(head: head, errorBody: errorBody)
    }

    /// 0.2 s, then 0.8 s: a registry restarting or shedding load gets a moment.
    private func backOff(_ attempt: Int) async throws(OCIError) {
        do {
            try await Task.sleep(for: .milliseconds(200 * (1 << (2 * (attempt - 2)))))
        } catch {
            throw OCIError.transport(registry, "the pull was cancelled")
        }
    }

    /// The first message of a distribution error body (`{"errors":[{"code":…,"message":…}]}`), else its text.
    static func errorMessage(_ body: [UInt8]) -> String {
        struct Errors: Decodable {
            struct Entry: Decodable {
                var code: String?
                var message: String?
            }
            var errors: [Entry]
        }
        // try?: a body that is not the distribution's error JSON is shown as text instead.
        if let decoded = try? JSONDecoder().decode(Errors.self, from: Data(body)), let first = decoded.errors.first {
            return [first.code, first.message].compactMap { $0 }.joined(separator: ": ")
        }
        let text = String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "no message" : text
    }

    /// Scheme, host and port: a redirect that leaves them leaves the registry's credentials behind.
    struct Origin: Equatable {
        var scheme: String?
        var host: String?
        var port: Int?

        init(_ url: URL) {
            scheme = url.scheme?.lowercased()
            host = url.host?.lowercased()
            port = url.port ?? (scheme == "https" ? 443 : 80)
        }
    }
}
