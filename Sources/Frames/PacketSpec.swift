import Model

/// Builds frames for tests, benchmarks and the traffic generator:
/// Ethernet, optional VLAN tag, IPv4 (with options or fragment bits) or IPv6
/// (with an optional extension header), TCP, UDP or ICMP. Checksums are left
/// zero: the XDP program never reads them.
public struct PacketSpec: Sendable {
    public static let defaultClientMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
    public static let defaultLBMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0xAA]

    public var srcMAC: [UInt8] = defaultClientMAC
    public var dstMAC: [UInt8] = defaultLBMAC
    public var vlan: UInt16?
    public var etherType: UInt16?  // overrides the natural one
    public var src: IPAddress
    public var dst: IPAddress
    public var proto: UInt8 = 6
    public var sport: UInt16 = 40000
    public var dport: UInt16 = 80
    public var tcpFlags: UInt8 = TCPFlags.syn
    public var payload: [UInt8] = []
    public var ipOptions: [UInt8] = []  // IPv4 only; a multiple of 4 bytes
    public var fragment: UInt16 = 0  // IPv4 frag_off field (host order)
    public var ipv6Ext: UInt8?  // IPv6: insert this extension header
    public var ihlOverride: UInt8?
    public var lengthDelta: Int = 0  // added to tot_len / payload_len

    public init(
        src: String, dst: String, proto: UInt8 = 6, sport: UInt16 = 40000, dport: UInt16 = 80,
        tcpFlags: UInt8 = TCPFlags.syn
    ) {
        self.src = IPAddress(src)!
        self.dst = IPAddress(dst)!
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.tcpFlags = tcpFlags
    }

    public var bytes: [UInt8] {
        var l4: [UInt8]
        switch proto {
        case 6:
            l4 =
                be16(sport) + be16(dport) + [0, 0, 0, 1] + [0, 0, 0, 0]
                + [0x50, tcpFlags] + be16(0xFFFF) + [0, 0, 0, 0]
        case 17:
            l4 = be16(sport) + be16(dport) + be16(UInt16(8 + payload.count)) + [0, 0]
        default:
            l4 = [8, 0, 0, 0, 0, 1, 0, 1]  // ICMP echo
        }
        l4 += payload

        var frame = dstMAC + srcMAC
        if let vlan { frame += be16(0x8100) + be16(vlan) }
        if dst.family == .inet {
            frame += be16(etherType ?? 0x0800)
            let ihl = ihlOverride ?? UInt8(5 + ipOptions.count / 4)
            let total = 20 + ipOptions.count + l4.count + lengthDelta
            frame +=
                [0x40 | (ihl & 0x0F), 0] + be16(UInt16(truncatingIfNeeded: total)) + [0, 1]
                + be16(fragment) + [64, proto, 0, 0] + src.bytes + dst.bytes + ipOptions
        } else {
            frame += be16(etherType ?? 0x86DD)
            var next = proto
            var ext: [UInt8] = []
            if let ipv6Ext {
                ext = [proto, 0, 0, 0, 0, 0, 0, 0]  // 8-byte extension header
                next = ipv6Ext
            }
            let payloadLength = ext.count + l4.count + lengthDelta
            frame +=
                [0x60, 0, 0, 0] + be16(UInt16(truncatingIfNeeded: payloadLength)) + [next, 64]
                + src.bytes + dst.bytes + ext
        }
        return frame + l4
    }
}

public enum TCPFlags {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let ack: UInt8 = 0x10
}

public func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

/// XDP verdicts (enum xdp_action).
public enum Verdict: UInt32, Sendable, CustomStringConvertible {
    case aborted = 0, drop = 1, pass = 2, tx = 3, redirect = 4
    public var description: String { ["ABORTED", "DROP", "PASS", "TX", "REDIRECT"][Int(rawValue)] }
}
