import Foundation
import Testing

@testable import NexOCI

@Suite struct ImageReferenceTests {
    @Test func referencesAsPeopleWriteThem() throws {
        let tagged = try ImageReference(parsing: "oci://127.0.0.1:5000/tools/busybox:1.36")
        #expect(tagged.registry == "127.0.0.1:5000" && tagged.repository == "tools/busybox" && tagged.tag == "1.36")
        #expect(tagged.reference == "1.36")
        let plain = try ImageReference(parsing: "oci://Registry.Example:443/app")
        #expect(plain.registry == "registry.example:443" && plain.reference == "latest")
        let digest = String(repeating: "a", count: 64)
        let pinned = try ImageReference(parsing: "oci://localhost/app@sha256:\(digest)")
        #expect(pinned.digest?.hex == digest && pinned.tag == nil)
        #expect(pinned.description == "oci://localhost/app@sha256:\(digest)")
        // A tag beside a digest: the digest decides.
        let both = try ImageReference(parsing: "oci://localhost/app:1.0@sha256:\(digest)")
        #expect(both.repository == "app" && both.digest?.hex == digest)
    }

    @Test func badReferencesSayWhy() {
        let cases: [(String, String)] = [
            ("docker://x/app", "does not start with oci://"),
            ("oci://x", "names no repository"),
            ("oci://x:99999/app", "is not a HOST or HOST:PORT"),
            ("oci://x/App", "is not a repository"),
            ("oci://x/app:-bad", "is not a tag"),
            ("oci://x/app@sha256:abc", "64 lowercase hex digits"),
            ("oci://x/app@md5:abc", "only sha256"),
            ("oci://x:+5000/app", "is not a HOST or HOST:PORT"),
            ("oci://x/app@sha256:" + String(repeating: "\u{FF41}", count: 64), "64 lowercase hex digits"),
        ]
        for (text, says) in cases {
            let error = #expect(throws: OCIError.self) { try ImageReference(parsing: text) }
            #expect(error?.description.contains(says) == true, "\(text): \(String(describing: error))")
        }
    }

    @Test func digestsAreComputedOverTheBytes() throws {
        let abc = OCIDigest(of: Array("abc".utf8))
        #expect(abc.description == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var pieces = OCIDigest.Hasher()
        pieces.update(Array("a".utf8))
        pieces.update(Array("bc".utf8))
        #expect(pieces.finish() == abc && pieces.count == 3)
        #expect(try OCIDigest(parsing: abc.description) == abc)
    }
}

@Suite struct LayerUnpackerTests {
    /// A fresh root beside a directory outside it that no layer may touch.
    func withRoot(_ body: (String, String) throws -> Void) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("oci-\(UUID().uuidString)").path
        let root = base + "/rootfs"
        let outside = base + "/outside"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: base) }
        try body(root, outside)
    }

    func apply(_ layers: [TarBuilder], to root: String, keepsSetID: Bool = false) throws -> [String] {
        var unpacker = LayerUnpacker(root: root, keepsSetID: keepsSetID)
        for layer in layers {
            var tar = TarReader(MemorySource(layer.finished()))
            try unpacker.apply(&tar)
        }
        return unpacker.notes
    }

    func contents(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test func filesDirectoriesAndLinks() throws {
        try withRoot { root, _ throws in
            var layer = TarBuilder()
            layer.add("bin/", .directory, mode: 0o755)
            layer.add("bin/busybox", content: Array("#!busybox".utf8), mode: 0o4755)
            layer.add("bin/sh", .symlink, link: "/bin/busybox")
            layer.add("bin/ash", .hardlink, link: "bin/busybox")
            layer.add("./etc/passwd", content: Array("root:x:0:0::/root:/bin/sh\n".utf8))
            layer.add("dev/null", .characterDevice)
            layer.paxPath("deep/" + String(repeating: "d", count: 150) + "/file")
            layer.add("ignored-name", content: Array("long".utf8))
            let notes = try apply([layer], to: root)
            // An absolute link, kept as it is: inside the image it means the image's own /bin/busybox.
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/bin/sh") == "/bin/busybox")
            #expect(contents(root + "/bin/ash") == "#!busybox")
            #expect(contents(root + "/etc/passwd")?.hasPrefix("root:") == true)
            #expect(contents(root + "/deep/" + String(repeating: "d", count: 150) + "/file") == "long")
            let mode =
                try FileManager.default.attributesOfItem(atPath: root + "/bin/busybox")[.posixPermissions] as? Int
            #expect(mode == 0o755, "setuid dropped")
            #expect(!FileManager.default.fileExists(atPath: root + "/dev/null"))
            #expect(notes.contains { $0.contains("dev/null") })
        }
    }

    @Test func pathsThatLeaveTheRootAreRefused() throws {
        try withRoot { root, outside throws in
            for path in ["../outside/evil", "a/../../outside/evil", "/../outside/evil"] {
                var layer = TarBuilder()
                layer.add(path, content: [1])
                let error = #expect(throws: OCIError.self) { try apply([layer], to: root) }
                #expect(error?.description.contains("leaves the root file system") == true, "\(path)")
            }
            var hard = TarBuilder()
            hard.add("stolen", .hardlink, link: "../outside/secret")
            #expect(throws: OCIError.self) { try apply([hard], to: root) }
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        }
    }

    @Test func writesThroughLinksStayInside() throws {
        try withRoot { root, outside throws in
            // A relative link climbing out is refused when a write goes through it.
            var climb = TarBuilder()
            climb.add("up", .symlink, link: "../../../../../..\(outside)")
            climb.add("up/evil", content: [1])
            let error = #expect(throws: OCIError.self) { try apply([climb], to: root) }
            #expect(error?.description.contains("leads outside the root file system") == true)
            // An absolute link is read as inside the root: the write lands under the root, not outside.
            var absolute = TarBuilder()
            absolute.add("abs", .symlink, link: outside)
            absolute.add("abs/file", content: Array("in".utf8))
            _ = try apply([absolute], to: root)
            #expect(contents(root + outside + "/file") == "in")
            // A file replaced by a link, then written: the link itself is replaced, never followed.
            var swap = TarBuilder()
            swap.add("target", .symlink, link: outside + "/victim")
            swap.add("target", content: Array("mine".utf8))
            _ = try apply([swap], to: root)
            #expect(contents(root + "/target") == "mine")
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        }
    }

    /// A directory's mode is set when its layer ends: a directory replaced by a link meanwhile is not followed.
    @Test func aDirectoryReplacedByALinkKeepsTheModeInside() throws {
        try withRoot { root, outside throws in
            let before = try FileManager.default.attributesOfItem(atPath: outside)[.posixPermissions] as? Int
            var layer = TarBuilder()
            layer.add("d/", .directory, mode: 0o777)
            layer.add("d", .symlink, link: outside)
            _ = try apply([layer], to: root)
            let after = try FileManager.default.attributesOfItem(atPath: outside)[.posixPermissions] as? Int
            #expect(before == after)
        }
    }

    /// A NUL byte in a pax path would make C read another name than the one checked; a short pax record
    /// cannot crash the reader.
    @Test func nulBytesAndBrokenPaxRecordsAreRefused() throws {
        try withRoot { root, _ throws in
            var nul = TarBuilder()
            nul.paxPath("..\u{0}/x")
            nul.add("x", content: [1])
            #expect(throws: OCIError.self) { try apply([nul], to: root) }
            var short = TarBuilder()
            short.add("pax", .pax, content: Array("2 ".utf8))
            short.add("x", content: [1])
            #expect(throws: OCIError.self) { try apply([short], to: root) }
            #expect(FileManager.default.fileExists(atPath: root))
        }
    }

    @Test func whiteoutsHideLowerLayersOnly() throws {
        try withRoot { root, _ throws in
            var lower = TarBuilder()
            lower.add("a/b", content: [1])
            lower.add("a/c", content: [2])
            lower.add("d/x", content: [3])
            lower.add("d/sub/y", content: [4])
            var upper = TarBuilder()
            upper.add("a/.wh.b")
            upper.add("d/new", content: [5])  // before the opaque marker: it stays
            upper.add("d/.wh..wh..opq")
            _ = try apply([lower, upper], to: root)
            let fm = FileManager.default
            #expect(!fm.fileExists(atPath: root + "/a/b") && fm.fileExists(atPath: root + "/a/c"))
            #expect(try fm.contentsOfDirectory(atPath: root + "/d") == ["new"])
        }
    }

    @Test func gzipLayersAndTruncatedArchives() throws {
        var layer = TarBuilder()
        layer.add("hello", content: Array("world".utf8))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tar = dir + "/layer.tar"
        #expect(FileManager.default.createFile(atPath: tar, contents: Data(layer.finished())))
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", tar]
        try gzip.run()
        gzip.waitUntilExit()
        var reader = TarReader(try GzipSource(try FileSource(path: tar + ".gz")))
        let entry = try #require(try reader.next())
        #expect(entry.path == "hello" && entry.size == 5)
        #expect(try reader.readContent(upTo: 100) == Array("world".utf8))
        #expect(try reader.next() == nil)
        #expect(try GzipSource(try FileSource(path: tar + ".gz")).read(upTo: 0).isEmpty)
        // Two gzip members one after the other read as one stream.
        let gz = try #require(FileManager.default.contents(atPath: tar + ".gz"))
        let twice = dir + "/twice.gz"
        #expect(FileManager.default.createFile(atPath: twice, contents: gz + gz))
        let both = try GzipSource(try FileSource(path: twice))
        var total = 0
        while true {
            let chunk = try both.read(upTo: 4096)
            if chunk.isEmpty { break }
            total += chunk.count
        }
        #expect(total == layer.finished().count * 2)
        // A raised stop flag (a pull cancelled) ends reading at the file's next read.
        let stop = StopFlag()
        let stoppable = try FileSource(path: twice, stop: stop)
        #expect(try stoppable.read(upTo: 10).count == 10)
        stop.raise()
        #expect(throws: OCIError.stopped("the unpack was cancelled")) { _ = try stoppable.read(upTo: 10) }

        var cut = TarReader(MemorySource(Array(layer.finished().prefix(514))))  // two bytes of "world"
        _ = try cut.next()
        #expect(throws: OCIError.self) { _ = try cut.readContent(upTo: 100) }
        var corrupt = layer.finished()
        corrupt[10] ^= 0xff
        var bad = TarReader(MemorySource(corrupt))
        #expect(throws: OCIError.self) { _ = try bad.next() }
    }
}

@Suite struct RegistryFormatTests {
    @Test func challengesAreRead() {
        let bearer = AuthChallenge(
            header:
                #"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
        )
        #expect(bearer?.scheme == "bearer" && bearer?.realm == "https://auth.example/token")
        #expect(bearer?.service == "registry.example" && bearer?.scope == "repository:a/b:pull,push")
        #expect(AuthChallenge(header: #"Basic realm="Registry Realm""#)?.parameters == ["realm": "Registry Realm"])
        #expect(AuthChallenge(header: #"Bearer realm="a\"b""#)?.realm == #"a"b"#)
        #expect(AuthChallenge(header: #"Bearer realm="unclosed"#) == nil)
        #expect(AuthChallenge(header: "") == nil)
    }

    @Test func anIndexGivesThisPlatformsManifest() throws {
        let json = """
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:aa", "size": 1,
               "platform": {"os": "unknown", "architecture": "unknown"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:bb", "size": 2,
               "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
              {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:cc", "size": 3,
               "platform": {"os": "linux", "architecture": "amd64"}}]}
            """
        let index = try JSONDecoder().decode(ImageIndex.self, from: Data(json.utf8))
        #expect(try index.manifest(for: Platform(os: "linux", architecture: "amd64")).digest == "sha256:cc")
        #expect(try index.manifest(for: Platform(parsing: "linux/arm/v7")).digest == "sha256:bb")
        let missing = #expect(throws: OCIError.self) { try index.manifest(for: Platform(parsing: "linux/riscv64")) }
        #expect(
            missing?.description.contains("it has linux/arm/v7, linux/amd64") == true, "\(String(describing: missing))")
        #expect(throws: OCIError.self) { try Platform(parsing: "linux") }
        #expect(MediaType.layerCompression("application/vnd.docker.image.rootfs.diff.tar.gzip") == .gzip)
        #expect(MediaType.layerCompression("application/vnd.oci.image.layer.v1.tar") == .uncompressed)
        #expect(MediaType.layerCompression("application/vnd.in-toto+json") == nil)
        #expect(MediaType.manifestAccept.contains(MediaType.dockerManifest))
    }
}
