import Glibc
import Model
import SystemCalls

extension SystemCallError {
    /// "connect: connection refused": a failed call as check results say it
    /// (the call's name for `operation`).
    var checkFailure: String { "\(operation): \(Self.checkText(errno))" }

    /// "connection refused": strerror, lower-case, as check results print it.
    static func checkText(_ code: Int32) -> String { String(cString: strerror(code)).lowercased() }
}

/// A socket address for connect(2), built once per probe.
struct SocketAddressBytes: Sendable {
    let storage: sockaddr_storage
    let length: socklen_t
    let family: Int32

    init(_ address: IPAddress, port: UInt16) {
        var storage = sockaddr_storage()
        switch address.family {
        case .inet:
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: address.bytes) }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            family = AF_INET
        case .inet6:
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: address.bytes) }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            family = AF_INET6
        }
        self.storage = storage
    }
}

/// Non-blocking TCP sockets as the checker uses them.
enum TCPSocket {
    /// A new non-blocking socket with a connect to `address` under way (or
    /// done: loopback may finish at once). Throws on any other outcome.
    ///
    /// `quiet`: the handshake's last ACK is held back (TCP_QUICKACK off),
    /// as HAProxy's connect-only checks do: the check closes with a reset
    /// on the SYN-ACK, so the real's kernel answers the SYN and the
    /// application is never woken for a connection it would only see close.
    static func connect(
        _ address: SocketAddressBytes, quiet: Bool = false
    ) throws(SystemCallError) -> (fd: Int32, connected: Bool) {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try systemCall("socket", "for a check", reports: .minusOneAndErrno) { socket(address.family, type, 0) }
        if quiet { delayACK(fd) }
        var storage = address.storage
        do throws(SystemCallError) {
            let done = try withUnsafePointer(to: &storage) { (pointer) throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (name) throws(SystemCallError) in
                    try nonBlockingSystemCall(
                        "connect", "socket \(fd)", reports: .minusOneAndErrno, retryingEINTR: false
                    ) { Glibc.connect(fd, name, address.length) }
                }
            }
            return (fd, done != nil)
        } catch {
            // An interrupted connect goes on in the background: not run again.
            if error.errno == EINTR { return (fd, false) }
            close(fd)
            throw error
        }
    }

    /// The next data received is acknowledged on the delayed-ACK timer, not
    /// at once (TCP_QUICKACK off; the kernel turns it on again by itself).
    static func delayACK(_ fd: Int32) {
        var off: Int32 = 0
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &off, socklen_t(MemoryLayout<Int32>.size))
    }

    /// The error a finished connect left on the socket, 0 if none.
    static func pendingError(_ fd: Int32) -> Int32 {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        do throws(SystemCallError) {
            try systemCall("getsockopt", "SO_ERROR of socket \(fd)", reports: .minusOneAndErrno) {
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length)
            }
        } catch {
            return error.errno
        }
        return code
    }

    /// Closes with a reset, as HAProxy's checks do: no TIME_WAIT left on
    /// this host for every check (10,000 a second would fill the table).
    static func abort(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }
}

/// Raises this process's soft limit of open files to its hard limit once:
/// kept-alive http checks hold one socket per real.
let raiseFileLimit: Void = {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}()
