import NUID
import Testing

@Suite struct NUIDTests {
    @Test func identifiersHaveTheNATSShape() {
        var nuid = NUID()
        let id = nuid.next()
        #expect(id.utf8.count == 22)
        #expect(id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    @Test func identifiersShareThePrefixAndDiffer() {
        var nuid = NUID()
        let a = nuid.next()
        let b = nuid.next()
        #expect(a != b)
        #expect(a.prefix(12) == b.prefix(12))
    }

    @Test func sharedGeneratorIsUniqueAcrossThreads() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { (0..<5000).map { _ in NUID.next() } } }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(Set(ids).count == 20_000)
    }
}
