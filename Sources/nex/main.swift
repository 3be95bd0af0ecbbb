import ArgumentParser
import NexCLICommands

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Parse, then run the subcommand; errors print one line and exit non-zero.
do {
    var command = try NexCommand.parseAsRoot()
    if let runnable = command as? any NexCLIRunnable {
        try await runnable.execute()
    } else {
        try command.run()
    }
} catch {
    NexCommand.exit(withError: error)
}
