import Foundation
import NATS
import NATSJetStream
import NATSTestSupport
import Testing

@Suite(.timeLimit(.minutes(2))) struct KeyValueTests {
    @Test func putGetCreateUpdateDeletePurge() async throws {
        try await withJetStream { _, _, js in
            let kv = try await js.createKeyValue(KeyValueConfig(bucket: "config", history: 5))
            #expect(kv.usesDirectGet)
            let r1 = try await kv.put("db.host", "10.0.0.1")
            let r2 = try await kv.put("db.host", "10.0.0.2")
            #expect(r2 > r1)
            let latest = try #require(try await kv.get("db.host"))
            #expect(latest.string == "10.0.0.2" && latest.revision == r2 && latest.operation == .put)
            #expect(try await kv.get("db.host", revision: r1)?.string == "10.0.0.1")
            #expect(try await kv.get("missing") == nil)

            let created = try await kv.create("lock", Array("me".utf8))
            let exists = await #expect(throws: JetStreamError.self) { try await kv.create("lock", Array("you".utf8)) }
            #expect(exists?.description.contains("exists") == true)
            let updated = try await kv.update("lock", Array("me again".utf8), revision: created)
            await #expect(throws: JetStreamError.self) {
                try await kv.update("lock", Array("stale".utf8), revision: created)
            }
            #expect(try await kv.get("lock")?.revision == updated)

            try await kv.delete("lock")
            #expect(try await kv.get("lock") == nil)
            // A deleted key can be created again.
            _ = try await kv.create("lock", Array("new owner".utf8))
            #expect(try await kv.get("lock")?.string == "new owner")

            #expect(try await kv.history("db.host").map(\.string) == ["10.0.0.1", "10.0.0.2"])
            try await kv.purge("db.host")
            let afterPurge = try await kv.history("db.host")
            #expect(afterPurge.count == 1 && afterPurge[0].operation == .purge)
            #expect(try await kv.get("db.host") == nil)

            await #expect(throws: JetStreamError.self) { try await kv.put("bad key", "x") }
            await #expect(throws: JetStreamError.self) { try await kv.put(".leading", "x") }
            await #expect(throws: JetStreamError.self) {
                try await js.createKeyValue(KeyValueConfig(bucket: "bad.bucket"))
            }
        }
    }

    @Test func keysWithFilters() async throws {
        try await withJetStream { _, _, js in
            let kv = try await js.createKeyValue(KeyValueConfig(bucket: "users"))
            #expect(try await kv.keys().isEmpty)
            for k in ["users.ada", "users.grace", "teams.core"] { try await kv.put(k, "x") }
            try await kv.put("users.ada", "y")
            try await kv.delete("teams.core")
            #expect(Set(try await kv.keys()) == ["users.ada", "users.grace"])
            #expect(Set(try await kv.keys(matching: "users.*")) == ["users.ada", "users.grace"])
            #expect(try await kv.keys(matching: "teams.>").isEmpty)
        }
    }

    @Test func watchDeliversCurrentValuesThenChanges() async throws {
        try await withJetStream { _, _, js in
            let kv = try await js.createKeyValue(KeyValueConfig(bucket: "watched", history: 3))
            try await kv.put("a", "1")
            try await kv.put("a", "2")
            try await kv.put("b", "1")
            var events: [String] = []
            var iterator = kv.watch().makeAsyncIterator()
            while events.count < 3, let e = try await iterator.next() {
                switch e {
                case .initialValuesDone: events.append("done")
                case .entry(let entry): events.append("\(entry.key)=\(entry.string)")
                }
            }
            #expect(events == ["a=2", "b=1", "done"])
            try await kv.put("c", "new")
            try await kv.delete("a")
            let change = try await iterator.next()
            #expect(change.flatMap { if case .entry(let e) = $0 { "\(e.key)=\(e.string)" } else { nil } } == "c=new")
            if case .entry(let deleted)? = try await iterator.next() {
                #expect(deleted.key == "a" && deleted.operation == .delete)
            } else {
                Issue.record("expected the delete")
            }
            // An empty filter says so at once; updatesOnly skips what is stored.
            var empty = kv.watch("nothing.*").makeAsyncIterator()
            #expect(try await empty.next() == .initialValuesDone)
            var updates = kv.watch(updatesOnly: true).makeAsyncIterator()
            #expect(try await updates.next() == .initialValuesDone)
            try await kv.put("d", "later")
            if case .entry(let e)? = try await updates.next() {
                #expect(e.key == "d")
            } else {
                Issue.record("no update")
            }
            // History watch sees every revision.
            var all = kv.watch("a", includeHistory: true).makeAsyncIterator()
            var seen: [String] = []
            while let e = try await all.next(), e != .initialValuesDone {
                if case .entry(let entry) = e { seen.append(entry.operation == .put ? entry.string : "DEL") }
            }
            #expect(seen == ["1", "2", "DEL"])
        }
    }

    @Test func interopWithNatsPyBothWays() async throws {
        try #require(TestEnvironment.shouldRun(needing: TestEnvironment.python != nil), "python venv missing")
        let python = try #require(TestEnvironment.python, "python venv missing: run scripts/setup.sh")
        let script = TestEnvironment.packageRoot.appendingPathComponent("Tests/Peers/python/kv_peer.py").path
        try await withJetStream { server, _, js in
            // nats-py makes the bucket (allow_direct off) and writes; we read and write it.
            _ = try await TestEnvironment.run(python, [script, server.url, "make", "pymade", "greeting=hello", "n=1"])
            let pyBucket = try await js.keyValue("pymade")
            #expect(!pyBucket.usesDirectGet)
            #expect(try await pyBucket.get("greeting")?.string == "hello")
            #expect(Set(try await pyBucket.keys()) == ["greeting", "n"])
            try await pyBucket.put("n", "2")
            try await pyBucket.delete("greeting")
            // We make a bucket and write; nats-py reads both buckets.
            let ours = try await js.createKeyValue(KeyValueConfig(bucket: "swiftmade"))
            try await ours.put("lang", "swift")
            try await ours.put("user.ada", "admin")
            struct Read: Decodable {
                var values: [String: String?]
                var keys: [String]
            }
            let ourRead = try JSONDecoder().decode(
                Read.self,
                from: Data(
                    try await TestEnvironment.run(
                        python, [script, server.url, "read", "swiftmade", "lang", "user.ada", "none"]
                    ).utf8))
            #expect(ourRead.values["lang"] == "swift" && ourRead.values["user.ada"] == "admin")
            #expect(ourRead.values["none"] == .some(nil))
            #expect(ourRead.keys == ["lang", "user.ada"])
            let pyRead = try JSONDecoder().decode(
                Read.self,
                from: Data(
                    try await TestEnvironment.run(python, [script, server.url, "read", "pymade", "n", "greeting"]).utf8)
            )
            #expect(pyRead.values["n"] == "2" && pyRead.values["greeting"] == .some(nil))
            #expect(pyRead.keys == ["n"])
        }
    }
}
