public import NexModels

/// Which subjects a workload's words may reach NATS on through the node: the subjects it is triggered by,
/// those it publishes to or requests on through the messaging host service, and the reply subject its answer
/// goes to (chosen by whoever triggered it, and published with the node's connection). One policy, checked in
/// one place.
///
/// In order, a subject is refused when:
/// 1. it could match a pattern of the node's `deny_trigger_subjects` (rule `deny_trigger_subjects`);
/// 2. it is reserved: its first token starts with `$` (`$SYS`, `$JS`, `$KV`, `$O`, `$NEX`, `$SRV` and any
///    later one) or is one of the server's own reply prefixes (`_R_`, `_GR_`), its first token starts with
///    `_INBOX` (reply inboxes, custom prefixes like `_INBOX_app` too: a function answers with its return
///    value, never by writing into someone's inbox), or its first token is a wildcard that could match these
///    (rule `reserved` or `inbox`), unless a pattern of `subject_policy.allow_reserved`, or of the
///    namespace's own list, names it explicitly (its first token is that same literal token) and covers it;
/// 3. the namespace has an allow-list in `subject_policy.namespaces` (or `"*"` does, for a namespace without
///    one of its own) and no pattern of it covers the subject (rule `namespace_allow`).
///
/// A reply subject is held to the same rules, except that reply inboxes and the server's reply prefixes are
/// what replies are for.
public struct SubjectPolicy: Sendable, Equatable {
    /// Patterns that open reserved subjects to every namespace (each must name its `$…` or `_INBOX` token).
    public var allowReserved: [String] = []
    /// Allow-lists by namespace: a namespace listed here may use only subjects its patterns cover.
    public var namespaces: [String: [String]] = [:]
    /// The node's `deny_trigger_subjects` (refused for every use, whatever else allows).
    public var deny: [String] = []

    /// A policy with these allow-lists (`namespaces["*"]` covers every namespace not listed) and deny list.
    public init(allowReserved: [String] = [], namespaces: [String: [String]] = [:], deny: [String] = []) {
        self.allowReserved = allowReserved
        self.namespaces = namespaces
        self.deny = deny
    }

    /// What a workload does with a subject (a label of `nex_subject_refusals_total`).
    public enum Use: String, Sendable {
        case trigger, publish, request
        /// The reply subject of a trigger, which the function's answer is published to.
        case reply
    }

    /// The rule that refused a subject (a label of `nex_subject_refusals_total`).
    public enum Rule: String, Sendable {
        case denyTriggerSubjects = "deny_trigger_subjects"
        case reserved
        case inbox
        case namespaceAllow = "namespace_allow"
    }

    /// Nil when `subject` (a pattern, for triggers) may be used by a workload of `namespace`; else why not.
    public func refusal(for subject: String, namespace: String, use: Use) -> SubjectRefusal? {
        let tokens = Self.tokens(subject)
        func refused(_ rule: Rule, _ detail: String) -> SubjectRefusal {
            SubjectRefusal(subject: subject, namespace: namespace, use: use, rule: rule, detail: detail)
        }
        for pattern in deny where Self.overlaps(tokens[...], Self.tokens(pattern)[...]) {
            return refused(
                .denyTriggerSubjects,
                "it could match \(pattern) of the node's deny_trigger_subjects; use a subject outside it")
        }
        let own = namespaces[namespace] ?? namespaces["*"]
        if let rule = Self.reservedRule(tokens), !(use == .reply && Self.isReplyPrefix(tokens[0])) {
            let opened = (allowReserved + (own ?? [])).contains { pattern in
                let p = Self.tokens(pattern)
                return Self.namesReserved(p) && Self.covers(p[...], tokens[...])
            }
            if !opened {
                let what =
                    rule == .inbox
                    ? "it could reach reply inboxes (_INBOX.>), which only a requester's own replies use"
                    : "subjects whose first token starts with $, and the server's reply prefixes _R_ and _GR_, belong to "
                        + "NATS and Nex (\(tokens[0]) …)"
                return refused(
                    rule,
                    "\(what); an operator can open it by naming it in the node's subject_policy.allow_reserved")
            }
        }
        if let own, !(use == .reply && Self.isReplyPrefix(tokens[0])),
            !own.contains(where: { Self.covers(Self.tokens($0)[...], tokens[...]) })
        {
            return refused(
                .namespaceAllow,
                "namespace \(namespace) may use only \(own.joined(separator: ", ")) "
                    + "(subject_policy.namespaces.\(namespaces[namespace] == nil ? "*" : namespace) in the node's "
                    + "configuration)")
        }
        return nil
    }

    /// Checks the patterns an operator wrote, so a typo fails at start, not at the first refusal.
    public func validate() throws(NodeConfigurationError) {
        for pattern in allowReserved where !Self.namesReserved(Self.tokens(pattern)) {
            throw .invalid(
                "subject_policy.allow_reserved holds \(pattern), which names no reserved subject: each entry must "
                    + "start with its $ token or _INBOX (such as $SRV.PING or $KV.shared.>)")
        }
        let all = allowReserved + deny + namespaces.values.flatMap { $0 }
        for pattern in all where !Self.isValidPattern(pattern) {
            throw .invalid("\(pattern) is not a subject pattern (tokens separated by dots; * and > as whole tokens)")
        }
    }

    // MARK: Matching

    static func tokens(_ subject: String) -> [Substring] {
        subject.split(separator: ".", omittingEmptySubsequences: false)
    }

    /// Nil when the answer to a trigger may go to `reply`: the common case (a requester's inbox, no deny
    /// list) is decided without splitting the subject.
    public func replyRefusal(_ reply: String, namespace: String) -> SubjectRefusal? {
        if deny.isEmpty, reply.hasPrefix("_INBOX") || reply.hasPrefix("_R_.") || reply.hasPrefix("_GR_.") {
            return nil
        }
        return refusal(for: reply, namespace: namespace, use: .reply)
    }

    /// The first tokens of reply subjects: clients' inboxes and the server's own reply prefixes.
    static func isReplyPrefix(_ first: Substring) -> Bool {
        first.hasPrefix("_INBOX") || first == "_R_" || first == "_GR_"
    }

    /// `rule` when a subject with these tokens is, or could match, a reserved subject.
    static func reservedRule(_ tokens: [Substring]) -> Rule? {
        guard let first = tokens.first else { return nil }
        if first.hasPrefix("$") || first == "_R_" || first == "_GR_" { return .reserved }
        if first == "*" || first == ">" { return .reserved }  // a wildcard would match $… subjects too
        // `_INBOX` and the custom prefixes clients build from it (`_INBOX_app.…`).
        if first.hasPrefix("_INBOX") { return .inbox }
        return nil
    }

    /// Whether a pattern names a reserved token literally (only such patterns open reserved subjects).
    static func namesReserved(_ tokens: [Substring]) -> Bool {
        guard let first = tokens.first else { return false }
        return (first.hasPrefix("$") && first != "$") || first.hasPrefix("_INBOX") || first == "_R_"
            || first == "_GR_"
    }

    /// True when some concrete subject matches both patterns (wildcards on either side).
    static func overlaps(_ a: ArraySlice<Substring>, _ b: ArraySlice<Substring>) -> Bool {
        guard let x = a.first, let y = b.first else { return a.isEmpty && b.isEmpty }
        if x == ">" || y == ">" { return true }
        guard x == "*" || y == "*" || x == y else { return false }
        return overlaps(a.dropFirst(), b.dropFirst())
    }

    /// True when every subject `subject` matches is matched by `pattern`.
    static func covers(_ pattern: ArraySlice<Substring>, _ subject: ArraySlice<Substring>) -> Bool {
        guard let p = pattern.first else { return subject.isEmpty }
        guard let s = subject.first else { return false }
        if p == ">" { return true }
        if s == ">" { return false }
        guard p == "*" || p == s else { return false }
        return covers(pattern.dropFirst(), subject.dropFirst())
    }

    static func isValidPattern(_ pattern: String) -> Bool {
        let tokens = Self.tokens(pattern)
        for (index, token) in tokens.enumerated() {
            if token.isEmpty || token.contains(where: { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }) {
                return false
            }
            if token.count > 1, token.contains("*") || token.contains(">") { return false }
            if token == ">", index != tokens.count - 1 { return false }
        }
        return true
    }
}

/// A subject the ``SubjectPolicy`` refused: which rule, and what the workload or operator can do.
public struct SubjectRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    /// The subject (or trigger pattern) refused.
    public var subject: String
    /// The namespace of the workload that named it.
    public var namespace: String
    /// What the workload was doing with it.
    public var use: SubjectPolicy.Use
    /// The rule that refused it.
    public var rule: SubjectPolicy.Rule
    /// Why, and what the workload or the operator can do.
    public var detail: String

    /// One line for the deployer or the function: the subject, the rule and the detail.
    public var description: String {
        let what = use == .trigger ? "trigger subject" : "subject"
        return "\(what) \(subject) is not allowed (rule \(rule.rawValue)): \(detail)"
    }

    /// The refusal as a control API or host-service error.
    public var nexError: NexError { NexError(.unauthorized, description) }
}
