import Foundation
import NKeys
import Testing

@testable import NexNode

/// The node's resource directory: identity kept and reused, one node at a time, seeds from the configuration.
@Suite struct NodeHomeTests {
    func configuration(_ directory: String) -> NodeConfiguration {
        var config = NodeConfiguration()
        config.defaultResourceDir = directory
        return config
    }

    func scratch() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("nodehome-\(UUID().uuidString)").path
    }

    @Test func theIdentityIsMadeOnceAndKept() throws {
        let directory = scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try NodeHome.open(configuration: configuration(directory))
        let (id, xkey) = (first.identity.server.publicKey, first.identity.xkey.publicKey)
        #expect(id.hasPrefix("N") && xkey.hasPrefix("X"))
        for file in ["node.nk", "node.xk"] {
            let mode = try FileManager.default.attributesOfItem(atPath: directory + "/" + file)[.posixPermissions]
            #expect(mode as? Int == 0o600, "\(file)")
        }
        // A second node on the same directory is refused while the first holds it.
        let refused = #expect(throws: NodeHomeError.self) { try NodeHome.open(configuration: configuration(directory)) }
        #expect(refused?.message.contains("another node is running on \(directory) (pid \(getpid()))") == true)
        first.release()
        let again = try NodeHome.open(configuration: configuration(directory))
        #expect(again.identity.server.publicKey == id && again.identity.xkey.publicKey == xkey)
    }

    @Test func seedsFromTheConfigurationWinAndReadableSeedsAreRefused() throws {
        let directory = scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var config = configuration(directory)
        let server = NKeyPair.generate(.server)
        config.nodeSeed = server.seed
        let home = try NodeHome.open(configuration: config)
        #expect(home.identity.server.publicKey == server.publicKey)
        #expect(!FileManager.default.fileExists(atPath: directory + "/node.nk"))
        home.release()

        config.nodeXkeySeed = NKeyPair.generate(.account).seed
        let wrongRole = #expect(throws: NodeHomeError.self) { try NodeHome.open(configuration: config) }
        #expect(wrongRole?.message.contains("node_xkey_seed holds a account seed") == true)

        chmod(directory + "/node.xk", 0o644)
        let readable = #expect(throws: NodeHomeError.self) {
            try NodeHome.open(configuration: configuration(directory))
        }
        #expect(readable?.message.contains("chmod 600 \(directory)/node.xk") == true)
    }
}
