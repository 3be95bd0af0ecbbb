import ArgumentParser
import Foundation
import NexProcess
import NexSandbox

/// `nex rootfs`: builds the ext4 root filesystem a VM sandbox boots, with the agent in it (no Docker).
struct RootfsCommand: AsyncParsableCommand, NexCLIRunnable {
    static let configuration = CommandConfiguration(
        commandName: "rootfs",
        abstract: "Build an ext4 root filesystem with nex-agent for VM sandboxes (mkfs.ext4 -d; no Docker, no root).")

    @Option(help: "The nex-agent to put in (default: the one beside nex).")
    var agent: String?

    @Option(help: "A shell script the image runs before the agent starts (copied to /nex/setup.sh).")
    var script: String?

    @Option(help: "Image size in MiB (default: what the files need plus 64).")
    var size: Int?

    @Option(name: .shortAndLong, help: "The image to write.")
    var output: String = "rootfs.ext4"

    func execute() async throws {
        var builder = RootfsBuilder(
            agent: agent ?? Executable.directory + "/nex-agent", script: script, sizeMiB: size)
        builder.busybox = "/bin/busybox"
        do {
            let summary = try await builder.build(to: output)
            Output.say(
                "Wrote \(output): \(summary.imageMiB) MiB ext4 with \(summary.files) files "
                    + "(\(summary.contentBytes >> 20) MiB: nex-agent, its libraries, busybox, /init)")
        } catch let error as SandboxError {
            throw CLIError(error.description)
        }
    }
}
