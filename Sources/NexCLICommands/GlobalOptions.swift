import ArgumentParser
import Foundation
import NATS

/// Connection options shared by every command, with the NATS conventions.
package struct GlobalOptions: ParsableArguments {
    @Option(name: [.short, .customLong("server")], help: "NATS server URL(s), comma-separated (env NATS_URL).")
    package var server: String?

    @Option(help: "Credentials file (user JWT and seed).")
    package var creds: String?

    @Option(help: "User name.")
    package var user: String?

    @Option(help: "Password.")
    package var password: String?

    @Option(help: "Authentication token.")
    package var token: String?

    @Option(help: "Nkey seed file (SU…).")
    package var nkey: String?

    @Option(name: .customLong("tlscert"), help: "TLS client certificate (PEM).")
    package var tlsCert: String?

    @Option(name: .customLong("tlskey"), help: "TLS client key (PEM).")
    package var tlsKey: String?

    @Option(name: .customLong("tlsca"), help: "CA that signed the server certificate (PEM).")
    package var tlsCA: String?

    @Option(help: "Seconds to wait for a reply.")
    package var timeout: Double = 5

    @Option(help: "Namespace of workloads (env NEX_NAMESPACE).")
    package var namespace: String = ProcessInfo.processInfo.environment["NEX_NAMESPACE"] ?? "default"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, warning or error.")
    package var logLevel: String = "info"

    package init() {}

    /// Server URLs from `--server` or `NATS_URL` (nil when neither is set).
    package var servers: [String]? {
        let text = server ?? ProcessInfo.processInfo.environment["NATS_URL"]
        return text.map { $0.split(separator: ",").map(String.init) }
    }

    /// A client configuration with the credentials and TLS options given.
    package func configuration(servers: [String]) throws -> NATSClient.Configuration {
        var config = NATSClient.Configuration(servers: servers)
        config.name = "nex"
        config.requestTimeout = .milliseconds(Int64(timeout * 1000))
        config.connectTimeout = .milliseconds(Int64(max(timeout, 2) * 1000))
        if let creds {
            config.auth = .credentialsFile(path: creds)
        } else if let nkey {
            let seed = try String(contentsOfFile: nkey, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            config.auth = .nkey(seed: seed)
        } else if let token {
            config.auth = .token(token)
        } else if let user {
            config.auth = .userPassword(user: user, password: password ?? "")
        }
        if tlsCert != nil || tlsCA != nil {
            config.tls = .init(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        return config
    }

    /// Connects to `--server`/`NATS_URL` (or the default local server), or fails with a message a user can act on.
    package func connect() async throws -> NATSClient {
        try await connect(to: servers ?? ["nats://127.0.0.1:4222"])
    }

    /// Runs `body` with a connection, closed (and awaited) when `body` ends, also when it throws.
    package func withClient<T>(_ body: (NATSClient) async throws -> T) async throws -> T {
        let client = try await connect()
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    /// Connects to `servers` with these options.
    package func connect(to servers: [String]) async throws -> NATSClient {
        let client = NATSClient(configuration: try configuration(servers: servers))
        do {
            try await client.connect()
        } catch let e as NATSError where e.code == .noServers {
            throw CLIError("\(e.message) (is a nats-server running there? set --server or NATS_URL)")
        } catch let e as NATSError {
            throw CLIError("NATS: \(e.message)")
        }
        return client
    }
}

/// A failure the CLI reports on one line (exit code 1).
package struct CLIError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
