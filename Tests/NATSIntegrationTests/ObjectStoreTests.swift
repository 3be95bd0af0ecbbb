import Crypto
import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

/// The same deterministic bytes the Python peer makes.
func patternBytes(_ size: Int) -> [UInt8] { (0..<size).map { UInt8(($0 * 7 + 3) % 251) } }

@Suite(.timeLimit(.minutes(2))) struct ObjectStoreTests {
    @Test func putGetInfoListDelete() async throws {
        try await withJetStream { _, _, js in
            var store = try await js.createObjectStore(ObjectStoreConfig(bucket: "artifacts"))
            store.chunkSize = 1000
            let data = patternBytes(2500)
            let info = try await store.put(
                "bin/echo", data: data, description: "echo service", metadata: ["arch": "x86_64"])
            #expect(info.size == 2500 && info.chunks == 3)
            #expect(info.digest?.hasPrefix("SHA-256=") == true)
            #expect(try await store.get("bin/echo") == data)
            let stored = try #require(try await store.info("bin/echo"))
            #expect(stored.description == "echo service" && stored.metadata?["arch"] == "x86_64")
            #expect(stored.digest == info.digest)

            // Replacing keeps one copy of the chunks.
            let replaced = try await store.put("bin/echo", data: patternBytes(10))
            #expect(replaced.nuid != info.nuid)
            #expect(try await store.get("bin/echo") == patternBytes(10))
            _ = try await store.put("empty", data: [])
            #expect(try await store.get("empty") == [])
            #expect(Set(try await store.list().map(\.name)) == ["bin/echo", "empty"])

            try await store.delete("empty")
            #expect(try await store.info("empty") == nil)
            await #expect(throws: JetStreamError.self) { try await store.get("empty") }
            #expect(try await store.list().map(\.name) == ["bin/echo"])
            let streamInfo = try await js.streamInfo("OBJ_artifacts")
            // Left: the replacement's one chunk and metadata, and the deleted marker of "empty".
            #expect(streamInfo.state.messages == 3)
        }
    }

    @Test func putFromAFileAndFromChunks() async throws {
        try await withJetStream { server, _, js in
            let store = try await js.createObjectStore(ObjectStoreConfig(bucket: "files"))
            let big = patternBytes(300_000)  // three 128 KiB chunks
            let path = server.directory.appendingPathComponent("blob").path
            try Data(big).write(to: URL(fileURLWithPath: path))
            let fromFile = try await store.put("blob", file: path)
            #expect(fromFile.chunks == 3 && fromFile.size == 300_000)
            #expect(try await store.get("blob") == big)
            let pieces = AsyncStream<[UInt8]> { c in
                for i in stride(from: 0, to: big.count, by: 7777) { c.yield(Array(big[i..<min(i + 7777, big.count)])) }
                c.finish()
            }
            let fromChunks = try await store.put("pieces", chunks: pieces)
            #expect(fromChunks.digest == fromFile.digest)
            var streamed = 0
            for try await chunk in try await store.stream("pieces") { streamed += chunk.count }
            #expect(streamed == big.count)
        }
    }

    /// Found in review: an object replaced between reading its metadata and reading its chunks (which were
    /// purged) left the reader waiting forever. It now ends with an error.
    @Test(.timeLimit(.minutes(1))) func anObjectReplacedBeforeItsChunksAreReadIsAnError() async throws {
        try await withJetStream { _, _, js in
            var store = try await js.createObjectStore(ObjectStoreConfig(bucket: "moving"))
            store.chunkSize = 100
            _ = try await store.put("doc", data: patternBytes(1_000))
            let chunks = try await store.stream("doc")
            _ = try await store.put("doc", data: patternBytes(500))
            let error = await #expect(throws: JetStreamError.self) {
                for try await _ in chunks {}
            }
            #expect("\(String(describing: error))".contains("changed while it was read"))
        }
    }

    @Test func corruptedChunkIsCaughtByTheDigest() async throws {
        try await withJetStream { _, _, js in
            var store = try await js.createObjectStore(ObjectStoreConfig(bucket: "tamper"))
            store.chunkSize = 100
            let info = try await store.put("doc", data: patternBytes(250))
            // Swap the chunks for others of the same sizes: size matches, content does not.
            try await js.purgeStream("OBJ_tamper", subject: "$O.tamper.C.\(info.nuid)")
            for size in [100, 100, 50] {
                _ = try await js.publish([UInt8](repeating: 0, count: size), to: "$O.tamper.C.\(info.nuid)")
            }
            let error = await #expect(throws: JetStreamError.self) { try await store.get("doc") }
            #expect(error?.description.contains("digest mismatch") == true)
        }
    }

    @Test func watchSeesPutsAndDeletes() async throws {
        try await withJetStream { _, _, js in
            let store = try await js.createObjectStore(ObjectStoreConfig(bucket: "watched"))
            _ = try await store.put("a", data: [1])
            var it = store.watch().makeAsyncIterator()
            #expect(try await it.next()??.name == "a")
            #expect(try await it.next() == .some(nil))  // caught up
            _ = try await store.put("b", data: [2])
            #expect(try await it.next()??.name == "b")
            try await store.delete("a")
            let deleted = try await it.next()
            #expect(deleted??.name == "a" && deleted??.deleted == true)
        }
    }

    @Test func interopWithNatsPyBothWays() async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "python venv missing")
        let python = try #require(TestEnvironment.python, "python venv missing: run scripts/setup.sh")
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/obj_peer.py").path
        try await withJetStream { server, _, js in
            struct Put: Decodable {
                var nuid: String
                var digest: String
                var chunks: Int
            }
            let pyPut = try JSONDecoder().decode(
                Put.self,
                from: Data(
                    try await TestEnvironment.run(python, [script, server.url, "put", "pyobjs", "model.bin", "300000"])
                        .utf8))
            let pyStore = try await js.objectStore("pyobjs")
            let read = try await pyStore.get("model.bin")
            #expect(read == patternBytes(300_000))
            #expect(try await pyStore.info("model.bin")?.digest == pyPut.digest)

            let ours = try await js.createObjectStore(ObjectStoreConfig(bucket: "swiftobjs"))
            let mine = try await ours.put("artifact", data: patternBytes(200_000))
            struct Get: Decodable {
                var size: Int
                var sha256_hex: String
                var digest: String
            }
            let pyGet = try JSONDecoder().decode(
                Get.self,
                from: Data(
                    try await TestEnvironment.run(python, [script, server.url, "get", "swiftobjs", "artifact"]).utf8))
            #expect(pyGet.size == 200_000 && pyGet.digest == mine.digest)
            let expected = SHA256.hash(data: patternBytes(200_000)).map { String(format: "%02x", $0) }.joined()
            #expect(pyGet.sha256_hex == expected)
        }
    }
}
