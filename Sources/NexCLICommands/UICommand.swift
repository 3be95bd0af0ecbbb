import ArgumentParser
import Foundation
import Logging
import NATS
import NKeys
import NexUI
import ServiceLifecycle

/// `nex ui`: the web dashboard, on this machine's loopback.
struct UICommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Serve the web dashboard: nodes, workloads, events, logs and function rates, live.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The dashboard's port (0: any free port).")
    var port = DashboardServer.defaultPort

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port takes 0 to 65535, got \(port)") }
    }

    @Option(help: "The address to listen on (loopback unless set: the page can stop workloads).")
    var host = "127.0.0.1"

    @Option(help: "Issuer account seed file (SA…) the page stops workloads with (default ~/.nex/issuer.nk).")
    var issuer: String?

    // Not `--token`: that is the NATS server's token, one of the global options.
    @Option(
        name: .customLong("ui-token"),
        help: ArgumentHelp(
            "The token the page and API require (env NEX_UI_TOKEN; default: a new random one each start).",
            discussion:
                "The URL printed at start carries it; the page trades it for a cookie. Other local users can read "
                + "a command line: prefer NEX_UI_TOKEN."))
    var uiToken: String?

    func execute() async throws {
        let defaultIssuer = DeveloperKeys.home + "/issuer.nk"
        let issuerKey: NKeyPair? =
            if let issuer {
                try DeveloperKeys.load(issuer, expecting: .account)
            } else if FileManager.default.fileExists(atPath: defaultIssuer) {
                try DeveloperKeys.load(defaultIssuer, expecting: .account)
            } else {
                nil
            }
        // Shown on the page: without the credentials a URL may hold.
        let servers = (try global.servers() ?? ["nats://127.0.0.1:4222"]).map {
            ServerAddress(parsing: $0)?.description ?? "(a server)"
        }.joined(separator: ",")
        let given = uiToken ?? ProcessInfo.processInfo.environment["NEX_UI_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let given, let problem = DashboardServer.tokenProblem(given) { throw CLIError("--ui-token: \(problem)") }
        let chosen = given ?? DashboardServer.makeToken()
        try await global.withClient { client in
            let dashboard = DashboardServer(
                client: client, serverURL: servers, namespace: global.namespace, issuer: issuerKey, host: host,
                port: port, token: chosen, logger: Logger(label: "nex.ui")
            ) { [host] bound in
                let address = DashboardServer.url(host: host, port: bound, token: chosen)
                Output.say("Dashboard on \(address) (namespace \(global.namespace)); Ctrl-C stops it")
                if issuerKey == nil { Output.say("No issuer key: the page cannot stop workloads (see --issuer)") }
            }
            let group = ServiceGroup(
                configuration: .init(
                    services: [dashboard], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "nex")))
            try await group.run()
        }
    }
}
