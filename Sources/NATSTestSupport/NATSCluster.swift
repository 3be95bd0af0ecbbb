import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Several real nats-servers routed into one cluster on loopback.
public final class NATSCluster: Sendable {
    /// The members, in start order.
    public let servers: [NATSServer]

    private init(servers: [NATSServer]) {
        self.servers = servers
    }

    /// Client URLs of all members.
    public var urls: [String] { servers.map(\.url) }

    /// Starts `size` servers routed to each other and waits until every route is up.
    /// `config` is passed to every member as its config file.
    public static func start(size: Int = 3, jetStream: Bool = false, config: String? = nil) async throws -> NATSCluster
    {
        var servers: [NATSServer] = []
        let name = "c\(UInt32.random(in: 0...UInt32.max))"
        // Every member gets the full route list from the start (a JetStream cluster refuses to start without).
        let routePorts = try (0..<size).map { _ in try TestEnvironment.freePort() }
        do {
            for i in 0..<size {
                var options = NATSServer.Options(jetStream: jetStream, config: config)
                options.name = "\(name)-s\(i + 1)"
                let routes = routePorts.enumerated().filter { $0.offset != i }.map { "nats://127.0.0.1:\($0.element)" }
                options.cluster = .init(name: name, port: routePorts[i], routes: routes)
                options.arguments = ["-m", "-1"]
                servers.append(try await NATSServer.start(options))
            }
            let cluster = NATSCluster(servers: servers)
            try await cluster.waitForRoutes()
            if jetStream { try await cluster.waitForJetStreamQuorum() }
            return cluster
        } catch {
            for s in servers { s.stop() }
            throw error
        }
    }

    /// Stops every member.
    public func stop() {
        for s in servers { s.stop() }
    }

    /// Polls each server's `routez` until it has a route to every other member.
    func waitForRoutes() async throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            var ready = true
            for s in servers {
                // Not answering yet, or answering without routes: not ready, polled again.
                guard let port = s.monitoringPort, let url = URL(string: "http://127.0.0.1:\(port)/routez"),
                    let data = try? Data(contentsOf: url),
                    let routez = try? JSONDecoder().decode(Routez.self, from: data)
                else {
                    ready = false
                    break
                }
                let peers = Set(routez.routes.compactMap(\.remoteName))
                if peers.count < servers.count - 1 { ready = false }
            }
            if ready { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestEnvironment.Failure("cluster routes did not form within 15 s")
    }
}

extension NATSCluster {
    /// Polls each server's `jsz` until all agree on a JetStream meta leader and list every peer, so tests can
    /// place replicated streams at once.
    func waitForJetStreamQuorum() async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            var ready = true
            var leaders = Set<String>()
            for s in servers {
                // Not answering yet, or no leader with every peer yet: not ready, polled again.
                guard let port = s.monitoringPort, let url = URL(string: "http://127.0.0.1:\(port)/jsz"),
                    let data = try? Data(contentsOf: url),
                    let meta = (try? JSONDecoder().decode(Jsz.self, from: data))?.metaCluster,
                    let leader = meta.leader, !leader.isEmpty,
                    let replicas = meta.replicas, replicas.count == servers.count - 1
                else {
                    ready = false
                    break
                }
                leaders.insert(leader)
            }
            if ready, leaders.count == 1 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestEnvironment.Failure("JetStream meta group did not form within 30 s")
    }
}

extension NATSServer {
    /// The HTTP monitoring port, when started with `-m`.
    public var monitoringPort: Int? {
        let portsDir = directory.appendingPathComponent("ports")
        // The ports file is written once the server listens: none yet, no port yet.
        guard let file = try? FileManager.default.contentsOfDirectory(atPath: portsDir.path).first,
            let data = try? Data(contentsOf: portsDir.appendingPathComponent(file)),
            let monitoring = (try? JSONDecoder().decode(Ports.self, from: data))?.monitoring?.first
        else { return nil }
        return URLComponents(string: monitoring)?.port
    }
}

/// The parts of nats-server's monitoring answers the test support reads.
private struct Routez: Decodable {
    var routes: [Route]

    struct Route: Decodable {
        var remoteName: String?
        enum CodingKeys: String, CodingKey { case remoteName = "remote_name" }
    }
}

private struct Jsz: Decodable {
    var metaCluster: Meta?

    struct Meta: Decodable {
        var leader: String?
        var replicas: [Replica]?
    }
    struct Replica: Decodable {}

    enum CodingKeys: String, CodingKey { case metaCluster = "meta_cluster" }
}

private struct Ports: Decodable {
    var monitoring: [String]?
}
