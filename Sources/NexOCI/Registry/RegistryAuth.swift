import Foundation
import NIOCore
import Synchronization

/// What a registry has asked for and been given: basic credentials, or bearer tokens per scope until they expire.
final class RegistryAuth: Sendable {
    private struct Token {
        var value: String
        var expires: ContinuousClock.Instant
    }

    private struct State {
        var basic = false
        var tokens: [String: Token] = [:]
    }

    private let username: String?
    private let password: String?
    private let insecure: Bool
    private let state = Mutex(State())

    /// A token's lifetime when the token service names none (the distribution spec's default).
    static let defaultLifetime: Duration = .seconds(60)

    init(settings: RegistryClient.Settings) {
        username = settings.username
        password = settings.password
        insecure = settings.insecure
    }

    var hasCredentials: Bool { username != nil }

    private var basicHeader: String? {
        guard let username else { return nil }
        return "Basic " + Data("\(username):\(password ?? "")".utf8).base64EncodedString()
    }

    /// The `Authorization` value for a request in `scope`, if the registry has asked for one that is still good.
    func authorization(scope: String) -> String? {
        state.withLock { state in
            if state.basic { return basicHeader }
            guard let token = state.tokens[scope], token.expires > .now else { return nil }
            return "Bearer " + token.value
        }
    }

    /// Answers a 401's challenge: remembers basic credentials, or fetches a token from the realm.
    func answer(
        _ challenge: AuthChallenge, scope: String, registry: String, via client: RegistryClient
    ) async throws(OCIError) {
        switch challenge.scheme {
        case "basic":
            guard hasCredentials else {
                throw OCIError.unauthorized(
                    registry, "it asks for a username and password: add them to the node's oci_registries entry for it")
            }
            state.withLock { $0.basic = true }
        case "bearer":
            guard let realm = challenge.realm, var components = URLComponents(string: realm),
                ["http", "https"].contains(components.scheme?.lowercased() ?? "")
            else { throw OCIError.unauthorized(registry, "its bearer challenge names no http(s) realm") }
            var query = components.queryItems ?? []
            if let service = challenge.service { query.append(URLQueryItem(name: "service", value: service)) }
            query.append(URLQueryItem(name: "scope", value: challenge.scope ?? scope))
            components.queryItems = query
            guard let url = components.url else {
                throw OCIError.unauthorized(registry, "its realm \(realm) is not a URL")
            }
            // Credentials travel in the clear to an http realm: only for a registry the operator marked insecure.
            guard components.scheme?.lowercased() == "https" || insecure else {
                throw OCIError.unauthorized(
                    registry,
                    "its token service \(realm) is plain http: a registry reached over https must name an https realm")
            }
            let token = try await fetchToken(url, registry: registry, transport: client.transport)
            state.withLock { $0.tokens[scope] = token }
        default:
            throw OCIError.unauthorized(registry, "it asks for \(challenge.scheme) auth, which is not supported")
        }
    }

    private func fetchToken(
        _ url: URL, registry: String, transport: RegistryTransport
    ) async throws(OCIError) -> Token {
        var request = RegistryTransport.Request(url: url)
        if let basicHeader { request.headers.append(("authorization", basicHeader)) }
        var status = 0
        var body: [UInt8] = []
        do {
            try await transport.exchange(
                request, head: { status = $0.status },
                body: { chunk in
                    guard body.count + chunk.readableBytes <= 1 << 20 else {
                        throw OCIError.unauthorized(registry, "its token service answered more than 1 MiB")
                    }
                    body.append(contentsOf: chunk.readableBytesView)
                })
        } catch let error as OCIError {
            throw error
        } catch {
            throw OCIError.transport(url.host ?? registry, "\(error)")
        }
        switch status {
        case 200:
            break
        case 401, 403:
            throw OCIError.unauthorized(
                registry,
                "its token service at \(url.host ?? "?") refused "
                    + (hasCredentials ? "the username and password configured for it" : "an anonymous pull"))
        default:
            throw OCIError.unauthorized(
                registry, "its token service answered \(status): \(RegistryClient.errorMessage(body))")
        }
        struct Answer: Decodable {
            var token: String?
            var access_token: String?
            var expires_in: Int?
        }
        let answer: Answer
        do {
            answer = try JSONDecoder().decode(Answer.self, from: Data(body))
        } catch {
            throw OCIError.unauthorized(registry, "its token service answered something that is not a token")
        }
        guard let value = answer.token ?? answer.access_token, !value.isEmpty else {
            throw OCIError.unauthorized(registry, "its token service answered without a token")
        }
        // Renewed a little early, so a token does not run out between being picked and being checked.
        let lifetime = answer.expires_in.map { Duration.seconds(max($0, 1)) } ?? Self.defaultLifetime
        let margin: Duration = lifetime > .seconds(20) ? .seconds(5) : .zero
        return Token(value: value, expires: .now + lifetime - margin)
    }
}
