import CHealth
import Glibc
import Logging
import Model
import SystemCalls

/// tcp checks without a connection: one raw socket per address family
/// sends each check's SYN (a batch per turn of the loop, `sendmmsg`) and
/// reads the SYN-ACKs and resets (`recvmmsg`) that a classic BPF filter
/// lets through: only those to the probe's own source port. The kernel
/// answers each SYN-ACK with a reset itself (no socket is in state for it),
/// so the real's half-open connection goes at once, as after a full
/// connect closed at the SYN-ACK.
///
/// The source port is reserved by a TCP socket bound to it (never
/// listening), so the kernel hands it to no connection. Each SYN's
/// sequence number is a keyed hash (SipHash, a secret made at start) of the
/// target, the probe and the check's token: an answer counts only if it
/// acknowledges that number, so a forged one, or one to an earlier check,
/// is ignored.
///
/// A real answers a SYN with a SYN-ACK only when something listens on the
/// port and its accept queue has room: the same answer a full connect
/// waits for. Where no raw socket can be opened (no CAP_NET_RAW) tcp checks
/// connect fully, as before.
struct HalfOpen {
    /// One address family's raw socket.
    struct Family {
        var fd: Int32 = -1
        /// Opening it failed: tcp checks of this family connect fully.
        var failed = false
        /// Why it failed.
        var why = ""
        var pending: [tandem_syn] = []
        var pendingProbes: [Probe] = []
    }

    /// An answer's identity: the real's address and port, and the ack it
    /// must carry.
    struct Key: Hashable {
        var hi: UInt64
        var lo: UInt64
        var port: UInt16
        var ack: UInt32

        init(_ bytes: UnsafeRawBufferPointer, count: Int, port: UInt16, ack: UInt32) {
            if count == 4 {
                hi = .max
                lo = UInt64(bytes.loadUnaligned(as: UInt32.self))
            } else {
                hi = bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
                lo = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            }
            self.port = port
            self.ack = ack
        }
    }

    static let epollIDv4 = UInt64.max - 1
    static let epollIDv6 = UInt64.max - 2

    private(set) var port: UInt16 = 0
    /// The TCP socket holding `port`; -1 before the first tcp check, -2 if
    /// no port could be reserved.
    private var reserve: Int32 = -1
    var v4 = Family()
    var v6 = Family()
    var inFlight: [Key: Probe] = [:]
    /// For the source address of IPv4 targets (a connected UDP socket's).
    private var udp4: Int32 = -1
    private let secret: (UInt64, UInt64) = (.random(in: .min ... .max), .random(in: .min ... .max))
    /// Half-open checks sent since start.
    private(set) var sent: UInt64 = 0
    private var replies = [tandem_syn_reply](repeating: tandem_syn_reply(), count: 64)

    /// The raw socket for `family` (AF_INET or AF_INET6), opened on first
    /// use and added to `epfd`; nil when tcp checks of the family must
    /// connect fully.
    mutating func socket(_ family: Int32, epfd: Int32, logger: Logger) -> Int32? {
        let current = family == AF_INET ? v4 : v6
        if current.fd >= 0 { return current.fd }
        if current.failed { return nil }
        var opened = Family()
        if let why = reservePort() {
            opened.failed = true
            opened.why = "no source port: \(why)"
            logger.notice(
                "tcp checks connect fully: no source port for half-open checks", metadata: ["error": "\(why)"])
        } else {
            do throws(SystemCallError) {
                let fd = try systemCall("open raw socket", "for tcp checks") { tandem_syn_socket(family, port) }
                var event = tandem_epoll_event(EPOLLIN.rawValue, family == AF_INET ? Self.epollIDv4 : Self.epollIDv6)
                do throws(SystemCallError) {
                    try systemCall("epoll_ctl", "raw socket \(fd)", reports: .minusOneAndErrno) {
                        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
                    }
                    opened.fd = fd
                    logger.info(
                        "tcp checks of \(family == AF_INET ? "IPv4" : "IPv6") reals are half-open (SYN, SYN-ACK, reset)",
                        metadata: ["source-port": "\(port)"])
                } catch {
                    opened.failed = true
                    opened.why = error.checkFailure
                    Glibc.close(fd)
                }
            } catch {
                opened.failed = true
                opened.why = "no raw socket: \(SystemCallError.checkText(error.errno))"
                logger.notice(
                    "tcp checks of \(family == AF_INET ? "IPv4" : "IPv6") reals connect fully: no raw socket",
                    metadata: ["error": "\(SystemCallError.checkText(error.errno))"])
            }
        }
        if family == AF_INET { v4 = opened } else { v6 = opened }
        return opened.fd >= 0 ? opened.fd : nil
    }

    /// How tcp checks run, per address family tried so far; nil before the
    /// first: "IPv4 half-open (SYNs from port 40321), IPv6 full connects
    /// (no raw socket: Operation not permitted)".
    var summary: String? {
        var parts: [String] = []
        for (name, family) in [("IPv4", v4), ("IPv6", v6)] {
            if family.fd >= 0 {
                parts.append("\(name) half-open (SYNs from port \(port))")
            } else if family.failed {
                parts.append("\(name) full connects (\(family.why))")
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }

    /// Binds a TCP socket (IPv6 and IPv4 alike where the host has IPv6) to
    /// a port the kernel picks; nil on success, else why not.
    private mutating func reservePort() -> String? {
        if reserve >= 0 { return nil }
        if reserve == -2 { return "reserving one failed" }
        do throws(SystemCallError) {
            // IPv6 and IPv4 alike where the host has IPv6.
            let fd: Int32
            do throws(SystemCallError) {
                fd = try Self.boundSocket(AF_INET6)
            } catch {
                fd = try Self.boundSocket(AF_INET)
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            do throws(SystemCallError) {
                _ = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(SystemCallError) in
                    try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (name) throws(SystemCallError) in
                        try systemCall("getsockname", "socket \(fd)", reports: .minusOneAndErrno) {
                            getsockname(fd, name, &length)
                        }
                    }
                }
            } catch {
                Glibc.close(fd)
                throw error
            }
            // sin_port and sin6_port sit at the same offset.
            port = withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
            reserve = fd
            return nil
        } catch {
            reserve = -2
            return error.checkFailure
        }
    }

    /// A TCP socket of `family` (an IPv6 one takes IPv4 too) bound to a
    /// port the kernel picks.
    private static func boundSocket(_ family: Int32) throws(SystemCallError) -> Int32 {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try systemCall("socket", "for a source port", reports: .minusOneAndErrno) {
            Glibc.socket(family, type, 0)
        }
        if family == AF_INET6 {
            var off: Int32 = 0
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, socklen_t(MemoryLayout<Int32>.size))
        }
        var any = sockaddr_storage()
        any.ss_family = sa_family_t(family)
        let length = socklen_t(family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        do throws(SystemCallError) {
            _ = try withUnsafePointer(to: &any) { (pointer) throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (name) throws(SystemCallError) in
                    try systemCall("bind", "socket \(fd)", reports: .minusOneAndErrno) { bind(fd, name, length) }
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// The source address the route to `address` uses (IPv4), from a
    /// connected UDP socket; throws if there is no route.
    mutating func source(for address: SocketAddressBytes) throws(SystemCallError) -> UInt32 {
        if udp4 < 0 {
            udp4 = try systemCall("socket", "for source addresses", reports: .minusOneAndErrno) {
                Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
        }
        let udp4 = udp4
        var storage = address.storage
        _ = try withUnsafePointer(to: &storage) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (name) throws(SystemCallError) in
                try systemCall("connect", "socket \(udp4)", reports: .minusOneAndErrno) {
                    Glibc.connect(udp4, name, address.length)
                }
            }
        }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = try withUnsafeMutablePointer(to: &local) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (name) throws(SystemCallError) in
                try systemCall("getsockname", "socket \(udp4)", reports: .minusOneAndErrno) {
                    getsockname(udp4, name, &length)
                }
            }
        }
        return local.sin_addr.s_addr
    }

    /// The sequence number of `probe`'s check `token`.
    func sequence(_ probe: Probe) -> UInt32 {
        var key = secret
        var data: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &data) { d in
            probe.target.address.bytes.withUnsafeBytes { d.copyMemory(from: $0) }
            d.storeBytes(of: probe.target.port, toByteOffset: 16, as: UInt16.self)
            d.storeBytes(of: probe.token, toByteOffset: 20, as: UInt32.self)
            d.storeBytes(of: probe.id, toByteOffset: 24, as: UInt64.self)
        }
        let hash = withUnsafeBytes(of: &key) { k in
            withUnsafeBytes(of: &data) { d in
                tandem_siphash32(
                    k.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    d.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        return UInt32(truncatingIfNeeded: hash)
    }

    /// Queues `probe`'s SYN; sent at `flush`.
    mutating func queue(_ probe: Probe, source: UInt32) {
        var syn = tandem_syn()
        syn.dport = probe.target.port
        syn.seq = sequence(probe)
        let bytes = probe.target.address.bytes
        withUnsafeMutableBytes(of: &syn.dst) { $0.copyBytes(from: bytes) }
        withUnsafeMutableBytes(of: &syn.src) { $0.storeBytes(of: source, as: UInt32.self) }
        let key = bytes.withUnsafeBytes {
            Key($0, count: bytes.count, port: probe.target.port, ack: syn.seq &+ 1)
        }
        probe.synKey = key
        inFlight[key] = probe
        if bytes.count == 4 {
            v4.pending.append(syn)
            v4.pendingProbes.append(probe)
        } else {
            v6.pending.append(syn)
            v6.pendingProbes.append(probe)
        }
    }

    /// Forgets `probe`'s SYN in flight, if any.
    mutating func forget(_ probe: Probe) {
        if let key = probe.synKey {
            inFlight[key] = nil
            probe.synKey = nil
        }
    }

    var hasPending: Bool { !v4.pending.isEmpty || !v6.pending.isEmpty }

    /// Sends what is queued. Returns the probes whose SYN could not be sent,
    /// with the error; a full send buffer leaves the rest queued.
    mutating func flush() -> [(Probe, SystemCallError)] {
        var failed: [(Probe, SystemCallError)] = []
        let port = port
        if !v4.pending.isEmpty { Self.send(&v4, AF_INET, port, &sent, &failed) }
        if !v6.pending.isEmpty { Self.send(&v6, AF_INET6, port, &sent, &failed) }
        return failed
    }

    private static func send(
        _ f: inout Family, _ family: Int32, _ port: UInt16, _ sent: inout UInt64,
        _ failed: inout [(Probe, SystemCallError)]
    ) {
        var at = 0
        while at < f.pending.count {
            let fd = f.fd
            var done: Int32 = 0
            // 0, or the -errno of the SYN after the `done` sent.
            let result = f.pending.withUnsafeBufferPointer { all in
                tandem_syn_send(fd, family, port, all.baseAddress! + at, Int32(all.count - at), &done)
            }
            sent += UInt64(done)
            at += Int(done)
            guard result < 0 else { break }
            let code = -result
            if code == EAGAIN || code == EWOULDBLOCK || code == ENOBUFS {
                // The rest is tried again at the loop's next turn.
                f.pending.removeFirst(at)
                f.pendingProbes.removeFirst(at)
                return
            }
            failed.append((f.pendingProbes[at], SystemCallError("connect", "raw socket \(fd)", errno: code)))
            at += 1
        }
        // Emptied in place: the arrays keep their capacity for the next turn.
        f.pending.removeAll(keepingCapacity: true)
        f.pendingProbes.removeAll(keepingCapacity: true)
    }

    /// Reads every waiting answer of `family`: the probes answered, each
    /// with whether it was a reset.
    mutating func receive(_ family: Int32) -> [(Probe, Bool)] {
        let fd = family == AF_INET ? v4.fd : v6.fd
        guard fd >= 0 else { return [] }
        let batch = 64
        var answered: [(Probe, Bool)] = []
        while true {
            var read: Int32 = 0
            let n = replies.withUnsafeMutableBufferPointer {
                Int(tandem_syn_receive(fd, family, port, $0.baseAddress!, Int32(batch), &read))
            }
            for i in 0..<max(0, n) {
                let reply = replies[i]
                let key = withUnsafeBytes(of: reply.src) {
                    Key($0, count: family == AF_INET ? 4 : 16, port: reply.sport, ack: reply.ack)
                }
                guard let probe = inFlight.removeValue(forKey: key) else { continue }
                probe.synKey = nil
                answered.append((probe, reply.reset != 0))
            }
            if read < batch { return answered }
        }
    }

    /// Closes every socket.
    mutating func closeAll() {
        for fd in [v4.fd, v6.fd, reserve, udp4] where fd >= 0 { Glibc.close(fd) }
        v4 = Family()
        v6 = Family()
        reserve = -1
        udp4 = -1
        inFlight = [:]
    }
}
