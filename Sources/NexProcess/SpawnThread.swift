/// The one long-lived thread that performs every spawn (see ``ChildProcess``): a child's parent-death signal
/// is tied to the thread that forked it, and this one never exits.
enum SpawnThread {
    static let shared = WorkerThread(name: "nex-spawn")
}
