import Glibc
import Model
import SystemCalls

/// Sends sync datagrams from the calling thread: the record feed's thread
/// seals and sends a batch the moment the ring buffer wakes it, with no
/// hop to an event loop (each hop is a wakeup of another thread, several
/// µs of CPU a record at a few records at a time). One non-blocking UDP
/// socket per address family, bound to the listen address (an ephemeral
/// port: peers know a sender by its address), so the datagrams leave from
/// the address the peers have configured. A full socket buffer or an
/// unreachable peer fails the send, which is counted, never waited for.
final class DatagramSender: Sendable {
    /// One socket per family, nil where none could be opened.
    private let v4: Int32?
    private let v6: Int32?
    static let sendBuffer = 4 << 20

    init(listen: Endpoint) throws(SystemCallError) {
        func open(_ family: Int32, bind address: IPAddress?) throws(SystemCallError) -> Int32 {
            let fd = try systemCall("open", "a UDP socket for sync", reports: .minusOneAndErrno) {
                socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            }
            // A burst (a failover's clients) is hundreds of datagrams per
            // peer at once; the default buffer (about 200 KB) would refuse
            // the rest. Root may go past net.core.wmem_max.
            var size = Int32(Self.sendBuffer)
            let length = socklen_t(MemoryLayout<Int32>.size)
            if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, length) != 0 {
                _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, length)
            }
            if let address {
                let bound = Self.withSockaddr(Endpoint(address: address, port: 0)) { name, length in
                    Result { () throws(SystemCallError) in
                        try systemCall("bind the sync socket to", "\(address)", reports: .minusOneAndErrno) {
                            bind(fd, name, length)
                        }
                    }
                }
                if case .failure(let error) = bound {
                    close(fd)
                    throw error
                }
            }
            return fd
        }
        let unspecified = listen.address.bytes.allSatisfy { $0 == 0 }
        switch listen.address.family {
        case .inet:
            v4 = try open(AF_INET, bind: unspecified ? nil : listen.address)
            v6 = nil
        case .inet6:
            // A v6 listen address sends to v6 peers; IPv4 peers need an
            // IPv4 listen address (the config's validation says so).
            v6 = try open(AF_INET6, bind: unspecified ? nil : listen.address)
            v4 = nil
        }
    }

    deinit {
        if let v4 { close(v4) }
        if let v6 { close(v6) }
    }

    /// Sends `datagram` to `peer`; false if it did not leave.
    func send(_ datagram: [UInt8], to peer: Endpoint) -> Bool {
        guard let fd = peer.address.family == .inet ? v4 : v6 else { return false }
        return datagram.withUnsafeBytes { bytes in
            Self.withSockaddr(peer) { address, length in
                sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), address, length) == bytes.count
            }
        }
    }

    static func withSockaddr<T>(_ e: Endpoint, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        switch e.address.family {
        case .inet:
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = e.port.bigEndian
            withUnsafeMutableBytes(of: &a.sin_addr) { $0.copyBytes(from: e.address.bytes) }
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        case .inet6:
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = e.port.bigEndian
            withUnsafeMutableBytes(of: &a.sin6_addr) { $0.copyBytes(from: e.address.bytes) }
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
    }
}
