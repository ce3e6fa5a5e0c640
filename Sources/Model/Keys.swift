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

/// An IP address and a port, written `192.0.2.1:7946` or `[2001:db8::1]:7946`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `ADDR:PORT`, with an IPv6 address in brackets; port 1...65535.
    public init?(_ text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            // An IPv6 address needs brackets: "::1:80" is ambiguous.
            if host.contains(":") { return nil }
        }
        guard let address = IPAddress(String(host)), let p = UInt16(port), p > 0 else { return nil }
        if text.hasPrefix("[") && address.family != .inet6 { return nil }
        self.init(address: address, port: p)
    }

    public var description: String {
        address.family == .inet ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}
