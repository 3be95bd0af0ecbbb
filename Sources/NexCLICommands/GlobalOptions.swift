import ArgumentParser
import Foundation
import NATS
import NexControlClient
import Synchronization

/// Connection options shared by every command, with the NATS conventions: flags first, then `NATS_URL`, then the
/// `nats` CLI context (`--context`, `NATS_CONTEXT`, or the one `nats context select` chose).
package struct GlobalOptions: ParsableArguments {
    @Option(name: [.short, .customLong("server")], help: "NATS server URL(s), comma-separated (env NATS_URL).")
    package var server: String?

    @Option(help: "nats CLI context to connect with (env NATS_CONTEXT; default: the selected context).")
    package var context: String?

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

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    package var logLevel: String = "info"

    package init() {}

    /// The log levels `--log-level` takes.
    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    package func validate() throws {
        guard Self.logLevels.contains(logLevel) else {
            throw ValidationError("--log-level takes \(Self.logLevels.joined(separator: ", ")), got \(logLevel)")
        }
        if let problem = Self.namespaceProblem(namespace) { throw ValidationError(problem) }
        guard timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout takes more than 0 and up to 3600 seconds, got \(timeout)")
        }
    }

    /// Why `name` cannot be a namespace (it is one token of the control subjects), or nil.
    static func namespaceProblem(_ name: String) -> String? {
        let allowed = name.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9") || $0 == "_" || $0 == "-"
        }
        guard name.isEmpty || !allowed else { return nil }
        return "--namespace \"\(name)\" is not a namespace name: use letters, digits, - and _ (it is one token of "
            + "the $NEX subjects)"
    }

    /// The `nats` context in use: `--context`, else `NATS_CONTEXT`, else the selected one (nil when none is).
    /// A named context that cannot be used is an error; a broken selected one is only warned about (it is a
    /// default, and must not stop commands that give their server and credentials).
    package func natsContext() throws -> NATSContext? {
        let named = context ?? ProcessInfo.processInfo.environment["NATS_CONTEXT"].flatMap { $0.isEmpty ? nil : $0 }
        do { return try NATSContext.load(named: named) } catch {
            if named != nil { throw CLIError(error.message) }
            Self.warnOnce("the selected nats context is not used: \(error.message)")
            return nil
        }
    }

    private static let warned = Atomic(false)

    private static func warnOnce(_ text: String) {
        guard !warned.exchange(true, ordering: .relaxed) else { return }
        FileHandle.standardError.write(Data("nex: \(text)\n".utf8))
    }

    /// Server URLs from `--server`, `NATS_URL` or the context (nil when none of them names any).
    package func servers() throws -> [String]? {
        if let text = server ?? ProcessInfo.processInfo.environment["NATS_URL"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return text.split(separator: ",").map(String.init)
        }
        return try natsContext()?.servers
    }

    /// A client configuration with the credentials and TLS options given, else the context's.
    package func configuration(servers: [String]) throws -> NATSClient.Configuration {
        let natsContext = try natsContext()
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
        } else if let natsContext {
            do { config.auth = try natsContext.auth() } catch { throw CLIError(error.message) }
        }
        if tlsCert != nil || tlsCA != nil {
            config.tls = .init(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        } else if let tls = natsContext?.tls {
            config.tls = tls
        }
        if let inboxPrefix = natsContext?.inboxPrefix { config.inboxPrefix = inboxPrefix }
        return config
    }

    /// The control API client for `client`, in `--namespace`. Artifacts go to the JetStream the nodes fetch
    /// from (their account's own): a context's `jetstream_domain` is not used for them.
    package func nex(_ client: NATSClient) -> NexControlClient {
        NexControlClient(client: client, namespace: namespace)
    }

    /// Connects to `--server`/`NATS_URL`/the context (or the default local server), or fails with a message a
    /// user can act on.
    package func connect() async throws -> NATSClient {
        try await connect(to: try servers() ?? ["nats://127.0.0.1:4222"])
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
            throw CLIError("\(e.message) (is a nats-server running there? set --server, NATS_URL or --context)")
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
