import Foundation
import NexRunnerJS
import Synchronization
import Testing

@Suite struct JSFunctionTests {
    func run(_ source: String, _ payload: String = "", subject: String = "js.echo") throws -> JSFunction.Outcome {
        try JSFunction(source: source).call(subject: subject, payload: Array(payload.utf8))
    }

    /// A JetStream trigger's context is the third argument; a function of two arguments, or a core NATS
    /// trigger without a context, works as before.
    @Test func theContextIsTheThirdArgument() throws {
        let f = try JSFunction(source: "(s, p, ctx) => ctx === undefined ? 'none' : ctx.stream + ':' + ctx.delivered")
        #expect(
            f.call(subject: "s", payload: [], context: Array(#"{"stream":"ORDERS","delivered":2}"#.utf8))
                == .reply(Array("ORDERS:2".utf8)))
        #expect(f.call(subject: "s", payload: []) == .reply(Array("none".utf8)))
        let two = try JSFunction(source: "(s, p) => s")
        #expect(two.call(subject: "s", payload: [], context: Array("{}".utf8)) == .reply(Array("s".utf8)))
    }

    /// An error with `permanent: true`, thrown or rejected, is a permanent failure (retrying cannot help);
    /// any other error, or a `permanent` that is not `true`, is an ordinary one. A getter that throws does not
    /// replace the error.
    @Test func aPermanentErrorSaysSo() throws {
        let thrown = try run("(s, p) => { const e = new Error('bad input'); e.permanent = true; throw e; }")
        guard case .threwPermanently(let text) = thrown else {
            Issue.record("expected a permanent failure, got \(thrown)")
            return
        }
        #expect(text.contains("bad input"))
        let rejected = try run("async (s, p) => { throw Object.assign(new Error('no'), {permanent: true}); }")
        guard case .threwPermanently = rejected else {
            Issue.record("expected a permanent rejection, got \(rejected)")
            return
        }
        guard case .threw = try run("(s, p) => { throw Object.assign(new Error('x'), {permanent: 'yes'}); }") else {
            Issue.record("only `permanent: true` is permanent")
            return
        }
        guard case .threw = try run("(s, p) => { throw new Error('try again'); }") else {
            Issue.record("an ordinary error is not permanent")
            return
        }
        let getter = try run(
            "(s, p) => { const e = new Error('first'); Object.defineProperty(e, 'permanent', {get() { throw 1; }}); throw e; }"
        )
        guard case .threw(let first) = getter else {
            Issue.record("a throwing getter is not permanent, got \(getter)")
            return
        }
        #expect(first.contains("first"), "\(first)")
    }

    @Test func echoAndReplyConversions() throws {
        #expect(try run("(subject, payload) => payload", "heya") == .reply(Array("heya".utf8)))
        #expect(try run("(subject, payload) => subject") == .reply(Array("js.echo".utf8)))
        #expect(try run("(s, p) => new TextEncoder().encode('x').buffer") == .reply(Array("x".utf8)))
        #expect(try run("(s, p) => new TextDecoder().decode(p).toUpperCase()", "héllo") == .reply(Array("HÉLLO".utf8)))
        #expect(try run("(s, p) => undefined") == .reply([]))
        #expect(try run("(s, p) => null") == .reply([]))
        #expect(try run("(s, p) => ({a: 1, b: [true]})") == .reply(Array(#"{"a":1,"b":[true]}"#.utf8)))
        #expect(try run("function f(subject, payload) { return payload.length * 2 }; f", "abc") == .reply([54]))
        #expect(try run("async (s, p) => 'later'") == .reply(Array("later".utf8)))
    }

    @Test func hostServicesAreOnThisInBothForms() throws {
        let seen = Mutex<[String]>([])
        let host: JSFunction.HostCall = { service, method, args in
            seen.withLock { $0.append("\(service).\(method) \(args)") }
            return method == "keys" ? #"["a","b"]"# : #"{"$bytes":[104,105]}"#
        }
        let arrow = try JSFunction(
            source: "(s, p) => { this.hostServices.kv.set('k', p); return this.hostServices.kv.keys() }", host: host)
        #expect(arrow.call(subject: "s", payload: [1, 2]) == .reply(Array(#"["a","b"]"#.utf8)))
        let plain = try JSFunction(
            source: "(function (s, p) { return this.hostServices.kv.get('k') })", host: host)
        #expect(plain.call(subject: "s", payload: []) == .reply(Array("hi".utf8)))
        #expect(seen.withLock { $0 } == [#"kv.set ["k",{"$bytes":[1,2]}]"#, "kv.keys []", #"kv.get ["k"]"#])
        let failing = try JSFunction(
            source: "(s, p) => this.hostServices.http.delete('x')", host: { _, _, _ in throw JSError("denied") })
        guard case .threw(let message) = failing.call(subject: "s", payload: []) else {
            Issue.record("expected a throw")
            return
        }
        #expect(message.contains("denied"))
    }

    @Test func errorsCarryMessageAndStack() throws {
        guard case .threw(let text) = try run("(s, p) => { throw new Error('boom ' + s) }") else {
            Issue.record("expected a throw")
            return
        }
        #expect(text.contains("Error: boom js.echo") && text.contains("function.js"))
        #expect(throws: JSError.self) { try JSFunction(source: "(s, p) => {") }
        // Stacks and compile errors name the user's file when it is given.
        let named = try JSFunction(source: "(s, p) => {\n  throw new Error('deep')\n}", name: "orders.js")
        guard case .threw(let stack) = named.call(subject: "s", payload: []) else {
            Issue.record("expected a throw")
            return
        }
        #expect(stack.contains("orders.js:2"), "\(stack)")
        let syntax = #expect(throws: JSError.self) { try JSFunction(source: "(s, p) => {", name: "orders.js") }
        #expect(syntax?.description.contains("orders.js") == true, "\(String(describing: syntax))")
        let notFunction = #expect(throws: JSError.self) { try JSFunction(source: "42") }
        #expect(notFunction?.description.contains("not a function") == true)
    }

    @Test func consoleGoesToTheLog() throws {
        let lines = Mutex<[String]>([])
        let f = try JSFunction(
            source: "(s, p) => { console.log('hello', 1, {a: 2}); console.error('bad') }",
            log: { level, text in lines.withLock { $0.append("\(level) \(text)") } })
        #expect(f.call(subject: "s", payload: []) == .reply([]))
        #expect(lines.withLock { $0 } == [#"0 hello 1 {"a":2}"#, "8 bad"])
    }

    @Test func runawayFunctionsAreStoppedAndTheEngineStaysUsable() throws {
        var limits = JSFunction.Limits()
        limits.cpuMillis = 100
        let loop = try JSFunction(
            source: "(s, p) => { if (s === 'spin') { while (true) {} } return 'ok' }", limits: limits)
        let start = ContinuousClock.now
        guard case .limitExceeded(let why) = loop.call(subject: "spin", payload: []) else {
            Issue.record("expected the CPU limit")
            return
        }
        #expect(why.contains("CPU limit") && ContinuousClock.now - start < .seconds(3))
        #expect(loop.call(subject: "again", payload: []) == .reply(Array("ok".utf8)))

        limits.heapBytes = 16 << 20
        limits.cpuMillis = 10_000
        let bomb = try JSFunction(
            source:
                "(s, p) => { if (s === 'bomb') { const a = []; while (true) a.push({x: a.length}) } return 'fine' }",
            limits: limits)
        guard case .limitExceeded(let heap) = bomb.call(subject: "bomb", payload: []) else {
            Issue.record("expected the heap limit")
            return
        }
        #expect(heap.contains("heap limit"))
        #expect(bomb.call(subject: "after", payload: []) == .reply(Array("fine".utf8)))

        limits.arrayBufferBytes = 1 << 20
        let buffers = try JSFunction(source: "(s, p) => new Uint8Array(8 << 20).length", limits: limits)
        guard case .threw(let rangeError) = buffers.call(subject: "s", payload: []) else {
            Issue.record("expected an allocation failure")
            return
        }
        #expect(rangeError.contains("RangeError"))
    }
}
