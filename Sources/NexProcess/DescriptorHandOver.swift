import Foundation
import Synchronization

/// Who closes a descriptor given to a NIO bootstrap that then fails: NIO, once it made the channel (the
/// failure closes the channel, and the descriptor with it); the giver, before that (NIO gives it back). A
/// channel initializer runs only on a made channel, so it marks the moment NIO took the descriptor.
public final class DescriptorHandOver: Sendable {
    private let taken = Atomic(false)

    public init() {}

    /// Called from the channel initializer: NIO owns the descriptor now.
    public func markTaken() { taken.store(true, ordering: .sequentiallyConsistent) }

    /// After a failed bootstrap: closes `fd` when NIO never took it. (Closing it after NIO did would close a
    /// number the process may have reused since.)
    public func closeIfNotTaken(_ fd: Int32) {
        if !taken.load(ordering: .sequentiallyConsistent) { close(fd) }
    }
}
