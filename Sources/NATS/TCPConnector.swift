#if os(Linux)
    import Glibc

    /// Resolves a host and connects a TCP socket to it, blocking: run it on a thread pool. The addresses the
    /// resolver gives are tried in turn, each with an equal share of the time left (so an unreachable first
    /// address, often IPv6, cannot use up the whole timeout); the socket comes back connected, non-blocking,
    /// close-on-exec and with Nagle off. Name resolution itself is not bounded by the timeout.
    enum TCPConnector {
        /// Why no address could be connected: the last failure, as the system says it.
        struct Failure: Error, CustomStringConvertible {
            var description: String
        }

        /// `filter` sees every resolved address before it is dialled; an address it refuses is skipped, and
        /// when none is left the refusal is the failure.
        static func connect(
            host: String, port: Int, timeout: Duration,
            filter: (@Sendable (NATSClient.DialTarget) -> String?)? = nil
        ) throws(Failure) -> Int32 {
            let deadline = ContinuousClock.now + timeout
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_protocol = Int32(IPPROTO_TCP)
            var list: UnsafeMutablePointer<addrinfo>?
            let resolved = getaddrinfo(host, String(port), &hints, &list)
            guard resolved == 0, let first = list else {
                throw Failure(description: "cannot resolve \(host): \(String(cString: gai_strerror(resolved)))")
            }
            defer { freeaddrinfo(list) }
            var addresses: [addrinfo] = []
            var failure = Failure(description: "no address for \(host)")
            var entry: UnsafeMutablePointer<addrinfo>? = first
            while let address = entry?.pointee {
                entry = address.ai_next
                if let filter, let bytes = Self.bytes(of: address) {
                    if let refusal = filter(NATSClient.DialTarget(host: host, port: port, address: bytes)) {
                        failure = Failure(description: refusal)
                        continue
                    }
                } else if filter != nil {
                    continue  // neither IPv4 nor IPv6: nothing a filter could allow
                }
                addresses.append(address)
            }
            for (index, address) in addresses.enumerated() {
                let left = deadline - .now
                guard left > .zero else {
                    failure = Failure(description: "Connection timed out")
                    break
                }
                let share = left / (addresses.count - index)
                do {
                    return try connect(address, deadline: .now + share)
                } catch {
                    failure = error
                }
            }
            throw failure
        }

        private static func connect(_ address: addrinfo, deadline: ContinuousClock.Instant) throws(Failure) -> Int32 {
            let fd = socket(
                address.ai_family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw Failure(description: systemError()) }
            var connected = false
            defer { if !connected { close(fd) } }
            if Glibc.connect(fd, address.ai_addr, address.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else { throw Failure(description: systemError()) }
                while true {
                    let left = deadline - .now
                    guard left > .zero else { throw Failure(description: "Connection timed out") }
                    var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    let (seconds, attoseconds) = left.components
                    let millis = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
                    let ready = poll(&pfd, 1, millis)
                    if ready < 0, errno == EINTR { continue }
                    guard ready >= 0 else { throw Failure(description: systemError()) }
                    if ready == 0 { continue }  // the loop checks the deadline
                    break
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 else {
                    throw Failure(description: systemError())
                }
                guard error == 0 else { throw Failure(description: String(cString: strerror(error))) }
            }
            var on: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            connected = true
            return fd
        }

        /// The address of an IPv4 or IPv6 entry, in network order.
        private static func bytes(of address: addrinfo) -> [UInt8]? {
            guard let sockaddr = address.ai_addr else { return nil }
            switch address.ai_family {
            case AF_INET:
                return sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4 in
                    withUnsafeBytes(of: v4.pointee.sin_addr) { Array($0) }
                }
            case AF_INET6:
                return sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6 in
                    withUnsafeBytes(of: v6.pointee.sin6_addr) { Array($0) }
                }
            default:
                return nil
            }
        }

        private static func systemError() -> String { String(cString: strerror(errno)) }
    }
#endif
