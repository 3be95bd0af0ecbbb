import Foundation
import NATS
import NATSJetStream
import NexControlClient
import NexModels

/// One workload log line as `nex logs` shows it, and as `--json` prints it.
struct LogRecord: Encodable {
    /// When the line was kept (nil for a line that came only live, without the stream).
    var time: Date?
    var namespace: String
    var node: String
    var workloadName: String
    var workloadID: String
    var level: Int
    var text: String

    init(subject: String, time: Date?, entry: LogEntry) {
        // $NEX.logs.<ns>.<node>.<workload_name>.<workload_id>
        let parts = subject.split(separator: ".").map(String.init)
        func part(_ i: Int) -> String { i < parts.count ? parts[i] : "" }
        self.time = time
        namespace = part(2)
        node = part(3)
        workloadName = part(4)
        workloadID = part(5)
        level = entry.level
        text = entry.text
    }

    /// `debug`, `info`, `warn` or `error`.
    var levelName: String { [-4: "debug", 0: "info", 4: "warn", 8: "error"][level] ?? String(level) }

    enum CodingKeys: String, CodingKey {
        case time, namespace, node, level, text
        case workloadName = "workload_name"
        case workloadID = "workload_id"
    }
}

/// The lines nodes kept in ``NexLogStream``, then (when following) new ones as they come.
enum LogHistory {
    static let stream = NexLogStream.name
    static let linesPerWorkload = NexLogStream.linesPerWorkload

    /// Log lines of the namespace matching the filters: the kept ones first, in order; when `follow`, new ones
    /// after them until cancelled. Without the stream (no JetStream), new lines only.
    static func lines(
        _ nex: NexControlClient, node: String?, workloadName: String?, workloadID: String?, follow: Bool
    ) async throws -> Lines {
        let filter = NexSubjects.logsFilter(
            namespace: nex.namespace, node: node, workloadName: workloadName, workloadID: workloadID)
        let js = JetStreamContext(client: nex.client)
        let kept: Bool
        do {
            _ = try await js.streamInfo(stream)
            kept = true
        } catch let e as JetStreamError where e.code == 404 || e.code == 503 {
            kept = false
        } catch let e as NATSError where e.code == .noResponders || e.code == .timeout {
            kept = false  // no JetStream in this account
        }
        guard kept else {
            Output.notice("no node keeps log lines here (no \(stream) stream): showing new lines only")
            return Lines(source: .live(follow ? try await nex.client.subscribe(to: filter) : nil))
        }
        return Lines(source: .kept(OrderedConsumer(js: js, stream: stream, filterSubjects: [filter]), follow: follow))
    }

    /// The lines, kept then live.
    struct Lines: AsyncSequence {
        enum Source {
            case kept(OrderedConsumer, follow: Bool)
            case live(NATSSubscription?)
        }
        let source: Source

        func makeAsyncIterator() -> Iterator {
            switch source {
            case .kept(let consumer, let follow): Iterator(kept: consumer.makeAsyncIterator(), follow: follow)
            case .live(let sub): Iterator(live: sub?.makeAsyncIterator())
            }
        }

        struct Iterator: AsyncIteratorProtocol {
            var kept: OrderedConsumer.Iterator?
            var follow = true
            var live: NATSSubscription.AsyncIterator?

            init(kept: OrderedConsumer.Iterator, follow: Bool) {
                self.kept = kept
                self.follow = follow
            }

            init(live: NATSSubscription.AsyncIterator?) { self.live = live }

            mutating func next() async throws -> LogRecord? {
                while true {
                    if kept != nil {
                        guard let delivery = try await kept!.next() else { return nil }
                        switch delivery {
                        case .caughtUp: if !follow { return nil }
                        case .message(let m):
                            if let record = Self.record(m.message, time: m.metadata.timestamp.date) { return record }
                        }
                    } else {
                        guard let m = try await live?.next() else { return nil }
                        if let record = Self.record(m, time: nil) { return record }
                    }
                }
            }

            /// A log entry of the contract, or nil for anything else on a log subject (a node's own lines).
            static func record(_ m: NATSMessage, time: Date?) -> LogRecord? {
                // Not a workload's log entry: skipped.
                guard let entry = try? JSONDecoder().decode(LogEntry.self, from: Data(m.bytes)) else { return nil }
                return LogRecord(subject: m.subject, time: time, entry: entry)
            }
        }
    }
}
