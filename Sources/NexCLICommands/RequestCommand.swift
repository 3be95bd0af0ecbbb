import ArgumentParser
import Foundation
import NATS

/// `nex req SUBJECT PAYLOAD`: one NATS request, like `nats req`, to try a deployed service at once.
struct RequestCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "req", abstract: "Send a NATS request and print the reply (to try a workload).")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The subject.")
    var subject: String

    @Argument(help: "The payload (UTF-8).")
    var payload: String = ""

    func execute() async throws {
        try await global.withClient { client in
            do {
                let reply = try await client.request(payload, to: subject, timeout: .seconds(global.timeout))
                print(reply.string)
            } catch let e as NATSError where e.code == .noResponders {
                throw CLIError("no responders on \(subject)")
            } catch let e as NATSError where e.code == .timeout {
                throw CLIError("no reply on \(subject) within \(global.timeout) s")
            }
        }
    }
}
