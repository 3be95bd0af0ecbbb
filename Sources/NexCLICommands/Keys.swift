import Foundation
import NKeys
import NexNode

/// The developer keys `devrun` keeps under `$NEX_HOME` (default `~/.nex`): the issuer (account) that signs
/// deploys and the publisher (curve) key that seals environments.
enum DeveloperKeys {
    static var home: String { NexHome.path }

    /// Loads `file` under the home, or creates it; says which.
    static func loadOrCreate(_ file: String, _ prefix: NKeyPrefix) throws -> NKeyPair {
        let path = home + "/" + file
        if FileManager.default.fileExists(atPath: path) {
            let kp = try load(path, expecting: prefix)
            Output.notice("Reusing \(path) (\(kp.publicKey))")
            return kp
        }
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let kp = NKeyPair.generate(prefix)
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data((kp.seed! + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw CLIError("cannot write the key to \(path): check that the directory is writable")
        }
        Output.notice("Created \(path) (\(kp.publicKey))")
        return kp
    }

    /// Reads a seed file and checks its role.
    static func load(_ path: String, expecting prefix: NKeyPrefix) throws -> NKeyPair {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CLIError("cannot read the key file \(path): \(error.localizedDescription)")
        }
        let kp: NKeyPair
        do { kp = try NKeyPair(seed: text.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
            throw CLIError("\(path) does not hold a seed: \(error.message)")
        }
        guard kp.prefix == prefix else { throw CLIError("\(path) holds a \(kp.prefix) key; a \(prefix) key is needed") }
        return kp
    }
}
