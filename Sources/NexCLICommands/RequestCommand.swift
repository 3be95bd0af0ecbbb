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
                // An error answer (a function that threw, a limit hit) fails the command, with the error on
                // standard error; what came with it (the error text, a stack) stays on standard output.
                if let error = reply.headers?["Nats-Service-Error"] {
                    let code = reply.headers?["Nats-Service-Error-Code"].map { " (\($0))" } ?? ""
                    if !reply.string.isEmpty, reply.string != error { print(reply.string) }
                    throw CLIError("\(subject) answered with an error\(code): \(error)")
                }
                print(reply.string)
            } catch let e as NATSError where e.code == .noResponders {
                throw CLIError("no responders on \(subject): is a workload triggered by it running? (`nex ls`)")
            } catch let e as NATSError where e.code == .timeout {
                throw CLIError("no reply on \(subject) within \(global.timeout) s")
            }
        }
    }
}
