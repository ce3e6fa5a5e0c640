import Balancer

/// Builds test frames: Ethernet, optional VLAN tag, IPv4 (with options or
/// fragment bits) or IPv6 (with an optional extension header), TCP or UDP.
struct PacketSpec: Sendable {
    var srcMAC: [UInt8] = Topology.clientMAC
    var dstMAC: [UInt8] = Topology.lbMAC
    var vlan: UInt16?
    var etherType: UInt16?            // overrides the natural one
    var src: IPAddress
    var dst: IPAddress
    var proto: UInt8 = 6
    var sport: UInt16 = 40000
    var dport: UInt16 = 80
    var tcpFlags: UInt8 = TCPFlags.syn
    var payload: [UInt8] = []
    var ipOptions: [UInt8] = []       // IPv4 only; a multiple of 4 bytes
    var fragment: UInt16 = 0          // IPv4 frag_off field (host order)
    var ipv6Ext: UInt8?               // IPv6: insert this extension header
    var ihlOverride: UInt8?
    var lengthDelta: Int = 0          // added to tot_len / payload_len

    init(src: String, dst: String, proto: UInt8 = 6, sport: UInt16 = 40000, dport: UInt16 = 80,
         tcpFlags: UInt8 = TCPFlags.syn) {
        self.src = IPAddress(src)!
        self.dst = IPAddress(dst)!
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.tcpFlags = tcpFlags
    }

    var bytes: [UInt8] {
        var l4: [UInt8]
        switch proto {
        case 6:
            l4 = be16(sport) + be16(dport) + [0, 0, 0, 1] + [0, 0, 0, 0]
                + [0x50, tcpFlags] + be16(0xFFFF) + [0, 0, 0, 0]
        case 17:
            l4 = be16(sport) + be16(dport) + be16(UInt16(8 + payload.count)) + [0, 0]
        default:
            l4 = [8, 0, 0, 0, 0, 1, 0, 1]   // ICMP echo
        }
        l4 += payload

        var frame = dstMAC + srcMAC
        if let vlan { frame += be16(0x8100) + be16(vlan) }
        if dst.family == .inet {
            frame += be16(etherType ?? 0x0800)
            let ihl = ihlOverride ?? UInt8(5 + ipOptions.count / 4)
            let total = 20 + ipOptions.count + l4.count + lengthDelta
            frame += [0x40 | (ihl & 0x0F), 0] + be16(UInt16(truncatingIfNeeded: total)) + [0, 1]
                + be16(fragment) + [64, proto, 0, 0] + src.bytes + dst.bytes + ipOptions
        } else {
            frame += be16(etherType ?? 0x86DD)
            var next = proto
            var ext: [UInt8] = []
            if let ipv6Ext {
                ext = [proto, 0, 0, 0, 0, 0, 0, 0]   // 8-byte extension header
                next = ipv6Ext
            }
            let payloadLength = ext.count + l4.count + lengthDelta
            frame += [0x60, 0, 0, 0] + be16(UInt16(truncatingIfNeeded: payloadLength)) + [next, 64]
                + src.bytes + dst.bytes + ext
        }
        return frame + l4
    }
}

enum TCPFlags {
    static let fin: UInt8 = 0x01
    static let syn: UInt8 = 0x02
    static let rst: UInt8 = 0x04
    static let ack: UInt8 = 0x10
}

func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

/// XDP verdicts (enum xdp_action).
enum Verdict: UInt32, Sendable, CustomStringConvertible {
    case aborted = 0, drop = 1, pass = 2, tx = 3, redirect = 4
    var description: String { ["ABORTED", "DROP", "PASS", "TX", "REDIRECT"][Int(rawValue)] }
}
