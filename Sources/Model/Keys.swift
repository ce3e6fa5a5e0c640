/// A service as the dataplane keys it.
public struct ServiceKey: Hashable, Sendable, CustomStringConvertible {
    public var vip: IPAddress
    public var port: UInt16
    public var proto: L4Protocol

    public init(vip: IPAddress, port: UInt16, proto: L4Protocol) {
        self.vip = vip
        self.port = port
        self.proto = proto
    }

    public var description: String {
        (vip.family == .inet ? "\(vip):\(port)" : "[\(vip)]:\(port)") + "/\(proto == .tcp ? "tcp" : "udp")"
    }
}

public struct RealKey: Hashable, Sendable {
    public var group: UInt32
    public var address: IPAddress
    public init(group: UInt32, address: IPAddress) {
        self.group = group
        self.address = address
    }
}
