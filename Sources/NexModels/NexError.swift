/// Why Nex refused or failed something a user asked for: one type with a code, for the node (deploy, stop,
/// host calls, configuration at start) and for the client (no node, a refusal, a reply off the contract).
///
/// The code says what kind of problem it is (tests and programs check it); the message says what happened
/// and what to do, and is what the control API carries on the wire (the Nex contract has no codes).
public struct NexError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable, CaseIterable {
        /// Malformed or missing fields, a bad name, subject or location.
        case invalidRequest
        /// Not allowed: an issuer outside valid_issuers, a bad or foreign JWT, a denied subject.
        case unauthorized
        /// No such workload, artifact or object.
        case notFound
        /// A workload of that name already runs (and duplicates are off).
        case duplicate
        /// A node limit (count, bytes) would be exceeded.
        case limitExceeded
        /// This node cannot run it: the workload type, the sandbox, a dynamic executable in a sandbox.
        case unsupported
        /// Not now: no agent in time, the node shutting down or in lame duck, a server that did not answer.
        case unavailable
        /// The artifact is not what the deploy signed.
        case integrity
        /// The node could not write or record what it must keep.
        case storage
        /// Client side: no node answered.
        case noNode
        /// Client side: the node refused (the message is the node's, verbatim).
        case refused
        /// Client side: the reply was not the contract's shape.
        case badReply
    }

    public var code: Code
    public var message: String
    /// The cause may pass by itself (a server that did not answer, a full disk), unlike a refusal of the
    /// request itself: a node restoring a recorded workload keeps its record for the next start.
    public var isTransient: Bool

    public init(_ code: Code, _ message: String, isTransient: Bool = false) {
        self.code = code
        self.message = message
        self.isTransient = isTransient
    }

    public var description: String { message }
}
