@testable import Dataplane
import Frames
import Model
import TestSupport
import TestTraits
import Testing

/// One frame in, one verdict and counter out: the packet rules of
/// bpf/lib/parse.h and the plain forwarding path.
struct Fixture: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var verdict: Verdict
    /// The pkt_stats counter it must bump (nil: forwarded, counted per real).
    var reason: PacketReason?
    /// For XDP_TX: the reals it may go to.
    var reals: Set<UInt32> = []

    var testDescription: String { name }

    static let client = "198.18.10.7"
    static let vip = "198.18.0.100"

    static func tcp(_ dst: String = vip, port: UInt16 = 80, _ edit: (inout PacketSpec) -> Void = { _ in }) -> [UInt8] {
        var p = PacketSpec(src: dst.contains(":") ? "2001:db8:10::7" : client, dst: dst, dport: port)
        edit(&p)
        return p.bytes
    }

    static let all: [Fixture] = [
        Fixture(name: "TCP SYN to VIP:80 is sent to a real", bytes: tcp(), verdict: .tx, reason: nil, reals: [1, 2, 3]),
        Fixture(
            name: "TCP to VIP:443 is sent to a real", bytes: tcp(port: 443), verdict: .tx, reason: nil, reals: [1, 2, 3]
        ),
        Fixture(
            name: "UDP to VIP:443 is sent to a real",
            bytes: tcp {
                $0.proto = 17; $0.dport = 443; $0.payload = [1, 2, 3, 4]
            }, verdict: .tx, reason: nil, reals: [1, 2, 3]),
        Fixture(
            name: "IPv6 TCP to VIP:80 is sent to a real", bytes: tcp("2001:db8::100"), verdict: .tx, reason: nil,
            reals: [7, 8]),
        Fixture(
            name: "IPv4 options are honoured, packet served",
            bytes: tcp { $0.ipOptions = [1, 1, 1, 0, 0x44, 4, 5, 0] }, verdict: .tx, reason: nil, reals: [1, 2, 3]),
        Fixture(name: "TCP to another address passes", bytes: tcp("198.18.0.200"), verdict: .pass, reason: .passNotVIP),
        Fixture(
            name: "TCP to VIP on an unserved port passes", bytes: tcp(port: 22), verdict: .pass, reason: .passNotVIP),
        Fixture(
            name: "UDP to VIP:80 (only TCP served) passes",
            bytes: tcp { $0.proto = 17 }, verdict: .pass, reason: .passNotVIP),
        Fixture(name: "ICMP to VIP passes", bytes: tcp { $0.proto = 1 }, verdict: .pass, reason: .passOtherProto),
        Fixture(name: "ARP passes", bytes: tcp { $0.etherType = 0x0806 }, verdict: .pass, reason: .passNotIP),
        Fixture(name: "802.1Q tagged frame passes", bytes: tcp { $0.vlan = 7 }, verdict: .pass, reason: .passVLAN),
        Fixture(
            name: "Ethernet header alone, IPv4 type, passes", bytes: Array(tcp().prefix(14)), verdict: .pass,
            reason: .passMalformed),
        Fixture(
            name: "truncated IPv4 header passes", bytes: Array(tcp().prefix(14 + 12)), verdict: .pass,
            reason: .passMalformed),
        Fixture(name: "IPv4 ihl < 5 passes", bytes: tcp { $0.ihlOverride = 4 }, verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "IPv4 ihl past the frame passes", bytes: Array(tcp { $0.ihlOverride = 15 }.prefix(54)),
            verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "IPv4 total length beyond the frame passes",
            bytes: tcp { $0.lengthDelta = 100 }, verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "IPv4 version field wrong passes",
            bytes: {
                var b = tcp(); b[14] = 0x65; return b
            }(), verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "frame cut inside the TCP header (IP length beyond frame) passes",
            bytes: Array(tcp().prefix(14 + 20 + 12)), verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "TCP header longer than IP length claims, to VIP, dropped",
            bytes: tcp { $0.lengthDelta = -8 }, verdict: .drop, reason: .dropMalformed),
        Fixture(
            name: "TCP data offset < 5, to VIP, dropped",
            bytes: {
                var b = tcp(); b[14 + 20 + 12] = 0x40; return b
            }(), verdict: .drop, reason: .dropMalformed),
        Fixture(
            name: "UDP header longer than IP length claims, to VIP, dropped",
            bytes: tcp {
                $0.proto = 17; $0.dport = 443; $0.lengthDelta = -4
            }, verdict: .drop, reason: .dropMalformed),
        Fixture(
            name: "IPv6 TCP header longer than payload length claims, to VIP, dropped",
            bytes: tcp("2001:db8::100") { $0.lengthDelta = -10 }, verdict: .drop, reason: .dropMalformed),
        Fixture(
            name: "TCP header cut short, other address, passes",
            bytes: Array(tcp("198.18.0.200").prefix(14 + 20 + 12)), verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "IPv4 first fragment to VIP dropped",
            bytes: tcp { $0.fragment = 0x2000 }, verdict: .drop, reason: .dropFragment),
        Fixture(
            name: "IPv4 later fragment to VIP dropped",
            bytes: tcp { $0.fragment = 0x0010 }, verdict: .drop, reason: .dropFragment),
        Fixture(
            name: "IPv4 fragment to another address passes",
            bytes: tcp("198.18.0.200") { $0.fragment = 0x2000 }, verdict: .pass, reason: .passNotVIP),
        Fixture(
            name: "IPv4 DF bit alone is not a fragment",
            bytes: tcp { $0.fragment = 0x4000 }, verdict: .tx, reason: nil, reals: [1, 2, 3]),
        Fixture(
            name: "IPv6 hop-by-hop header to VIP dropped",
            bytes: tcp("2001:db8::100") { $0.ipv6Ext = 0 }, verdict: .drop, reason: .dropIPv6Ext),
        Fixture(
            name: "IPv6 fragment header to VIP dropped",
            bytes: tcp("2001:db8::100") { $0.ipv6Ext = 44 }, verdict: .drop, reason: .dropIPv6Ext),
        Fixture(
            name: "IPv6 extension header to another address passes",
            bytes: tcp("2001:db8::200") { $0.ipv6Ext = 60 }, verdict: .pass, reason: .passNotVIP),
        Fixture(
            name: "IPv6 header cut short passes",
            bytes: Array(tcp("2001:db8::100").prefix(14 + 30)), verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "IPv6 payload length beyond the frame passes",
            bytes: tcp("2001:db8::100") { $0.lengthDelta = 9 }, verdict: .pass, reason: .passMalformed),
        Fixture(
            name: "ICMPv6 to VIP passes",
            bytes: tcp("2001:db8::100") { $0.proto = 58 }, verdict: .pass, reason: .passOtherProto),
        Fixture(
            name: "service with every real down and no sorry server drops",
            bytes: tcp("198.18.0.104"), verdict: .drop, reason: .dropNoReal),
        Fixture(
            name: "service with every real down uses its sorry server",
            bytes: tcp("198.18.0.103"), verdict: .tx, reason: nil, reals: [14])
    ]
}

@Suite("Packet rules", .privileged)
struct PacketRuleTests {
    @Test(arguments: Fixture.all)
    func fixture(_ f: Fixture) throws {
        let rig = try Rig()
        let result = try rig.send(bytes: f.bytes)
        #expect(result.verdict == f.verdict)
        if let reason = f.reason { #expect(rig.reason(reason) == 1, "counter \(reason)") }
        let others = PacketReason.allCases.filter { $0 != f.reason }
        #expect(others.allSatisfy { rig.reason($0) == 0 }, "only \(String(describing: f.reason)) counted")
        if f.verdict == .tx {
            let real = try #require(result.real, "sent to a known real's MAC")
            #expect(f.reals.contains(real))
            // Counted once, on the real's line in its service (the sorry
            // server is no backend: its service's line only).
            let services = (0..<UInt32(rig.model.services.count)).map { rig.dataplane.counters(service: $0).packets }
            #expect(services.reduce(0, +) == 1)
            #expect(rig.dataplane.counters(real: real).packets == (real == 14 ? 0 : 1))
            // Only the MACs change: the real's MAC in front, ours as source.
            #expect(Array(result.output[6..<12]) == Topology.lbMAC)
            #expect(Array(result.output[12...]) == Array(f.bytes[12...]))
        } else {
            #expect(result.output == f.bytes, "passed or dropped frames are untouched")
        }
    }
}
