import Logging
import NATSJetStream
import NexModels

extension NexNode {
    /// Makes (or brings up to date) the stream that keeps workloads' last log lines. Without JetStream the node
    /// runs on and says that `nex logs` shows new lines only.
    func keepLogLines() async {
        var config = StreamConfig(name: NexLogStream.name, subjects: NexLogStream.subjects)
        config.description = "The last lines of each Nex workload's log (nex logs)"
        config.maxMessagesPerSubject = NexLogStream.linesPerWorkload
        config.maxAge = NexLogStream.maxAge
        config.maxBytes = NexLogStream.maxBytes
        config.discard = .old
        do {
            _ = try await JetStreamContext(client: client).createOrUpdateStream(config)
        } catch {
            logger.info(
                "workload log lines are not kept (nex logs shows new lines only)",
                metadata: ["reason": "\(error)", "stream": "\(NexLogStream.name)"])
        }
    }
}
