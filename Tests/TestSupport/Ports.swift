import Foundation
import Glibc
import Synchronization

/// Loopback ports for a test's own listeners.
public enum Ports {
    /// Ports handed out by this process: never twice.
    private static let given = Mutex<Set<Int>>([])

    /// A port on 127.0.0.1 free for both UDP and TCP a moment ago, from
    /// below the kernel's ephemeral range (`ip_local_port_range`, 32768 up
    /// by default). The kernel takes a connect's source port, and a bind to
    /// port 0, only from that range, so the health checks and clients that
    /// run beside a test cannot take the port between this check and the
    /// test's own bind; a port from bind(0) could be, and was. Fixed ports
    /// collide with whatever else runs on the machine.
    public static func freeUDPAndTCP() -> Int {
        let below = ephemeralLow()
        let range = 10_000..<max(10_001, below)
        for _ in 0..<1000 {
            let port = Int.random(in: range)
            guard given.withLock({ !$0.contains(port) }), isFree(port) else { continue }
            let fresh = given.withLock { $0.insert(port).inserted }
            if fresh { return port }
        }
        fatalError("no free loopback port for UDP and TCP in \(range)")
    }

    /// `count` distinct such ports.
    public static func freeUDPAndTCP(_ count: Int) -> [Int] {
        (0..<count).map { _ in freeUDPAndTCP() }
    }

    /// The first port of the ephemeral range (32768 when it cannot be read).
    static func ephemeralLow() -> Int {
        let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        return text?.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
    }

    /// Whether a UDP and a TCP socket can both bind 127.0.0.1:`port` now.
    static func isFree(_ port: Int) -> Bool {
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer {
            close(udp)
            close(tcp)
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(udp, $0, size) == 0 && bind(tcp, $0, size) == 0
            }
        }
    }
}
