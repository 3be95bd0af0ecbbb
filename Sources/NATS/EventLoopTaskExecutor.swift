public import NIOCore

/// A Swift Concurrency `TaskExecutor` that runs jobs on one NIO event loop.
///
/// Tasks that prefer it run on the same thread that reads and writes the client's socket, so a message can
/// be handled and answered without waking another thread. Code running here must not block: a blocked job
/// stalls that connection's I/O (the same rule the cooperative pool already imposes).
public final class EventLoopTaskExecutor: TaskExecutor, Sendable {
    /// The loop jobs run on.
    public let eventLoop: any EventLoop

    public init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
