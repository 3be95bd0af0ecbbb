import Crypto
import Foundation
import NATS
import NATSJetStream
import NexModels
import Synchronization

/// Host services brokered by the node for its functions (wire contract §6): an agent asks on
/// a host call on its link (service, method and a JSON array of arguments, ``HostCallArguments``); the node
/// acts with its own connection on resources private to the workload and answers with the result as JSON
/// (``HostCallResult``), or an error text. The agent holds no credentials to any of it.
final class HostServicesBroker: Sendable {
    let client: NATSClient
    /// What a function may publish to or request on.
    let subjects: SubjectPolicy
    /// Counts the subjects ``subjects`` refused.
    let metrics: NodeMetrics?
    /// Services the node's `host_services_config.services` switched off.
    let disabled: Set<String>
    /// The http service's client, holding the node's egress policy.
    let http: HTTPHostService
    /// Deadline of one host call, so a blocked call never outlives the function's limits.
    let timeout: Duration = .seconds(5)
    /// Buckets already made or opened, so a host call is one JetStream request, not two.
    private let keyValues = Mutex<[String: KeyValue]>([:])
    private let objectStores = Mutex<[String: ObjectStore]>([:])

    init(
        client: NATSClient, subjects: SubjectPolicy, metrics: NodeMetrics? = nil, disabled: Set<String> = [],
        egress: EgressPolicy = .globalOnly
    ) {
        self.client = client
        self.http = HTTPHostService(client: HTTPEgressClient(policy: egress))
        self.subjects = subjects
        self.metrics = metrics
        self.disabled = disabled
    }

    /// The private key-value bucket of a workload: one per namespace and name (hashed, so names with `_` or
    /// `-` in different places never meet).
    static func bucket(prefix: String, namespace: String, name: String) -> String {
        let digest = SHA256.hash(data: Data("\(namespace)\u{0}\(name)".utf8))
        return prefix + digest.prefix(10).map { String(format: "%02x", $0) }.joined()
    }

    /// The host services a function can call (the configuration names the object store `objectstore`;
    /// so do the calls).
    static let services: Set<String> = ["kv", "objectstore", "messaging", "http"]

    /// An answer to a host-service call, and how the call went, for the metrics and the call's span.
    struct Answer: Sendable {
        /// True: `body` is the result as JSON; false: it is the error text.
        var ok: Bool
        var body: [UInt8]
        var outcome: HostServiceOutcome

        static func failure(_ text: String, _ outcome: HostServiceOutcome) -> Answer {
            Answer(ok: false, body: Array(text.utf8), outcome: outcome)
        }
    }

    /// `trace`: headers carrying the host-service call's span, added to the messages and requests it makes.
    func handle(
        namespace: String, name: String, service: String, method: String, arguments: [UInt8],
        trace: NATSHeaders? = nil
    ) async -> Answer {
        if disabled.contains(service) {
            return .failure("\(service).\(method): the \(service) host service is disabled on this node", .disabled)
        }
        do {
            let body = try await withDeadline {
                let args = try HostCallArguments(json: arguments)
                return try await self.call(
                    namespace: namespace, name: name, service: service, method: method, args: args, trace: trace
                ).json()
            }
            return Answer(ok: true, body: body, outcome: .ok)
        } catch let refusal as SubjectRefusal {
            metrics?.subjectRefused(refusal)
            return .failure("\(service).\(method): \(refusal)", .refused)
        } catch {
            return .failure("\(service).\(method): \(error)", .error)
        }
    }

    private func call(
        namespace: String, name: String, service: String, method: String, args: HostCallArguments,
        trace: NATSHeaders?
    ) async throws -> HostCallResult {
        switch (service, method) {
        case ("kv", _): return try await keyValue(namespace: namespace, name: name, method: method, args: args)
        case ("objectstore", _):
            return try await objectStore(namespace: namespace, name: name, method: method, args: args)
        case ("http", _):
            return try await http.call(method: method, args: args, traceParent: trace?[TraceParent.headerName])
        case ("messaging", "publish"):
            let subject = try args.string(0, "subject")
            try checkSubject(subject, namespace: namespace, use: .publish)
            try await client.publish(args.bytes(1), to: subject, headers: trace)
            return .null
        case ("messaging", "request"):
            let subject = try args.string(0, "subject")
            try checkSubject(subject, namespace: namespace, use: .request)
            let reply = try await client.request(args.bytes(1), to: subject, headers: trace, timeout: timeout)
            return .bytes(reply.bytes)
        case ("messaging", "requestMany"):
            let subject = try args.string(0, "subject")
            try checkSubject(subject, namespace: namespace, use: .request)
            let replies = try await client.requestMany(
                args.bytes(1), to: subject, headers: trace, stall: .milliseconds(300), timeout: timeout)
            return .list(replies.map { .bytes($0.bytes) })
        default:
            throw NexError(.notFound, "no such host service method")
        }
    }

    private func keyValue(
        namespace: String, name: String, method: String, args: HostCallArguments
    ) async throws -> HostCallResult {
        let bucket = Self.bucket(prefix: "NEXKV_", namespace: namespace, name: name)
        let kv: KeyValue
        if let known = keyValues.withLock({ $0[bucket] }) {
            kv = known
        } else {
            var config = KeyValueConfig(bucket: bucket)
            config.description = "Nex host services: key-value of \(namespace)/\(name)"
            kv = try await JetStreamContext(client: client).createKeyValue(config)
            keyValues.withLock { $0[bucket] = kv }
        }
        switch method {
        case "get":
            guard let entry = try await kv.get(args.string(0, "key")) else { return .null }
            return .bytes(entry.value)
        case "set":
            _ = try await kv.put(args.string(0, "key"), args.bytes(1))
            return .null
        case "delete":
            try await kv.delete(args.string(0, "key"))
            return .null
        case "keys":
            return .strings(try await kv.keys())
        default:
            throw NexError(.notFound, "no such key-value method \(method)")
        }
    }

    private func objectStore(
        namespace: String, name: String, method: String, args: HostCallArguments
    ) async throws -> HostCallResult {
        let bucket = Self.bucket(prefix: "NEXOS_", namespace: namespace, name: name)
        let store: ObjectStore
        if let known = objectStores.withLock({ $0[bucket] }) {
            store = known
        } else {
            var config = ObjectStoreConfig(bucket: bucket)
            config.description = "Nex host services: object store of \(namespace)/\(name)"
            store = try await JetStreamContext(client: client).createObjectStore(config)
            objectStores.withLock { $0[bucket] = store }
        }
        switch method {
        case "get":
            let object = try args.string(0, "name")
            guard try await store.info(object) != nil else { return .null }
            return .bytes(try await store.get(object))
        case "put":
            let info = try await store.put(args.string(0, "name"), data: args.bytes(1))
            return .object(.init(name: info.name, size: Int(info.size)))
        case "delete":
            try await store.delete(args.string(0, "name"))
            return .null
        case "list":
            return .objects(try await store.list().map { .init(name: $0.name, size: Int($0.size)) })
        default:
            throw NexError(.notFound, "no such object store method \(method)")
        }
    }

    private func checkSubject(_ subject: String, namespace: String, use: SubjectPolicy.Use) throws(SubjectRefusal) {
        if let refusal = subjects.refusal(for: subject, namespace: namespace, use: use) { throw refusal }
    }

    private func withDeadline<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let timeout = self.timeout
        return try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw NexError(.unavailable, "timed out after \(timeout)")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }
}
