import Glibc

/// Loopback ports for a test's own listeners.
public enum Ports {
    /// A port on 127.0.0.1 that was free for both UDP and TCP a moment
    /// ago (the kernel picked it for a UDP socket, a TCP socket could bind
    /// it too); both are closed again before it is returned. Fixed ports
    /// collide with whatever else runs on the machine.
    public static func freeUDPAndTCP() -> Int {
        for _ in 0..<20 {
            let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            let tcp = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer {
                close(udp)
                close(tcp)
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let size = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Bool in
                    var length = size
                    guard bind(udp, p, size) == 0, getsockname(udp, p, &length) == 0 else { return false }
                    return bind(tcp, p, size) == 0
                }
            }
            if bound { return Int(UInt16(bigEndian: address.sin_port)) }
        }
        fatalError("no free loopback port for UDP and TCP")
    }

    /// `count` distinct such ports.
    public static func freeUDPAndTCP(_ count: Int) -> [Int] {
        var ports: [Int] = []
        while ports.count < count {
            let port = freeUDPAndTCP()
            if !ports.contains(port) { ports.append(port) }
        }
        return ports
    }
}
