import ArgumentParser
import Foundation
import NexCLICommands

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Parse, then run the subcommand; errors print one line and exit non-zero.
do {
    if let unknown = NexCommand.unknownSubcommand(in: Array(CommandLine.arguments.dropFirst())) {
        FileHandle.standardError.write(Data("Error: \(unknown)\n".utf8))
        exit(64)  // EX_USAGE, as the parser exits for a usage error
    }
    var command = try NexCommand.parseAsRoot()
    if let runnable = command as? any NexCLIRunnable {
        try await runnable.execute()
    } else {
        try command.run()
    }
} catch {
    NexCommand.exit(withError: error)
}
