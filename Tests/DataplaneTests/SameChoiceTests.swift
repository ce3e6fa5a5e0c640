import BPF
import Configuration
import Control
@testable import Dataplane
import Foundation
import Frames
import Glibc
import Model
import SystemCalls
import TandemABI
import TestSupport
import TestTraits
import Testing

/// Same choice on every node (docs/design/several-nodes.md): two nodes behind ECMP, given the same
/// config after different reload histories (so their group and real ids
/// differ), send every client to the same real address, and say so with
/// equal ring digests.
@Suite("Same choice on every node", .privileged)
struct SameChoiceTests {
    static let clients = 100_000

    /// The topology plus a maglev service without persistence (5-tuple hash).
    static let yaml =
        Topology.yaml + """

              - name: plain
                vip: 198.18.0.105
                port: 80
                check: { type: none }
                reals: [{ address: 198.18.0.71, port: 80 }, { address: 198.18.0.72, port: 80, weight: 2 }, { address: 198.18.0.73, port: 80, weight: 3 }]
            """

    static func withFailures(_ state: inout ControlState) {
        state.setHealth(service: "sorry", address: IPAddress("198.18.0.51")!, up: false)
        state.setHealth(service: "dead", address: IPAddress("198.18.0.61")!, up: false)
    }

    /// Node A: the final config from the start.
    static func direct(_ final: ValidatedConfig) throws -> Rig {
        var state = try ControlState(final)
        withFailures(&state)
        return try Rig(state)
    }

    /// Node B: services in another order, an unrelated group that takes
    /// the low ids, shop-quic and alt added late, other weights on the way;
    /// then the final config.
    static func replayed(_ final: ValidatedConfig) throws -> Rig {
        var early = final.config
        var other = Config.Service(name: "other", vip: IPAddress("198.18.0.110")!, port: 80)
        other.persistence = Persistence(timeoutNs: Topology.timeoutNs, netmask: 32)
        other.check = HealthCheck(.none)
        other.reals = (81...90).map { Config.Real(address: IPAddress("198.18.0.\($0)")!, port: 80) }
        early.services.removeAll { $0.name == "shop-quic" || $0.name == "alt" }
        for i in early.services.indices where early.services[i].name.hasPrefix("shop-") {
            early.services[i].follow.removeAll { $0 == "shop-quic" }
        }
        for i in early.services.indices where early.services[i].name == "plain" {
            early.services[i].reals[2].weight = 1
        }
        early.services = [other] + early.services.reversed()
        var state = try ControlState(ConfigValidator.validate(early, file: "early.yaml"))
        withFailures(&state)
        let rig = try Rig(state)
        try rig.reload { c in
            c.services.append(contentsOf: final.config.services.filter { $0.name == "alt" || $0.name == "shop-quic" })
            for i in c.services.indices where c.services[i].name.hasPrefix("shop-") {
                c.services[i].follow = final.config.services.first { $0.name == c.services[i].name }!.follow
            }
        }
        try rig.reload { c in c = final.config }
        return rig
    }

    /// The address a SYN is sent to.
    static func chosen(_ rig: Rig, _ packet: PacketSpec) throws -> IPAddress? {
        let result = try rig.send(packet)
        guard result.verdict == .tx, let id = result.real else { return nil }
        return rig.model.real(id)?.address
    }

    /// Client `i` of 100,000, inside 198.18.0.0/15 and clear of the VIPs and reals.
    static func client(_ i: Int) -> IPAddress {
        let n = UInt32(198) << 24 | UInt32(18) << 16 | 0x4000 + UInt32(i)
        return IPAddress(bytes: [
            UInt8(n >> 24), UInt8(truncatingIfNeeded: n >> 16),
            UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)
        ])!
    }

    @Test("100,000 clients: the same real address on both nodes, and equal ring digests")
    func sameChoice() throws {
        let final = try ConfigParser.parseValidated(Self.yaml, file: "topology.yaml")
        let a = try Self.direct(final)
        let b = try Self.replayed(final)
        #expect(a.state.config == b.state.config)

        // The histories did leave other ids behind.
        let http = try #require(a.state.config.services.first { $0.name == "shop-http" })
        #expect(a.state.groupID("shop-http") != b.state.groupID("shop-http"))
        #expect(a.state.serviceID("shop-http") != b.state.serviceID("shop-http"))
        let idsA = http.reals.map {
            a.state.ids.reals[RealKey(group: a.state.groupID("shop-http")!, address: $0.address)]
        }
        let idsB = http.reals.map {
            b.state.ids.reals[RealKey(group: b.state.groupID("shop-http")!, address: $0.address)]
        }
        #expect(idsA != idsB)

        // Persistence (maglev on the masked client), IPv4 and IPv6 /64,
        // maglev on the 5-tuple, and fixed: every client, both nodes.
        var same = 0, compared = 0
        for i in 0..<Self.clients {
            let src = Self.client(i)
            var packets = [
                PacketSpec(src: "0.0.0.0", dst: "198.18.0.100", dport: 80),
                PacketSpec(src: "0.0.0.0", dst: "198.18.0.105", sport: UInt16(1024 + i % 60000), dport: 80)
            ]
            packets[0].src = src
            packets[1].src = src
            if i % 10 == 0 {
                packets.append(
                    PacketSpec(src: "2001:db8:20:\(String(i / 10, radix: 16))::1", dst: "2001:db8::100", dport: 80))
                var alt = PacketSpec(src: "0.0.0.0", dst: "198.18.0.100", dport: 8080)
                alt.src = src
                var fixed = PacketSpec(src: "0.0.0.0", dst: "198.18.0.102", dport: 80)
                fixed.src = src
                packets += [alt, fixed]
            }
            for p in packets {
                let x = try Self.chosen(a, p), y = try Self.chosen(b, p)
                #expect(x != nil, "\(p.src) to \(p.dst):\(p.dport) is forwarded")
                compared += 1
                if x == y {
                    same += 1
                } else if compared - same <= 5 {
                    Issue.record(
                        "\(p.src) to \(p.dst):\(p.dport): \(x.map(\.description) ?? "-") on one node, \(y.map(\.description) ?? "-") on the other"
                    )
                }
            }
        }
        print("same real address on both nodes: \(same)/\(compared) connections of \(Self.clients) clients")
        #expect(same == compared)

        // The maps themselves: per service the same seed and the same ring
        // of addresses (real ids told apart by the reals map); equal digests.
        for s in final.config.services {
            let digestA = try #require(a.dataplane.ringDigests[a.state.serviceID(s.name)!])
            let digestB = try #require(b.dataplane.ringDigests[b.state.serviceID(s.name)!])
            #expect(digestA == digestB, "\(s.name)")
            #expect(try Self.mapRing(a, s) == Self.mapRing(b, s), "\(s.name)")
        }
    }

    /// The service's hash seed and its live ring as addresses, read back
    /// from the pinned maps.
    static func mapRing(_ rig: Rig, _ s: Config.Service) throws -> (seed: UInt32, ring: [IPAddress?]) {
        let model = try #require(rig.model.services.first { $0.id == rig.state.serviceID(s.name) })
        let entry = try #require(rig.dataplane.services.lookup(tandem_service_key(model)))
        let ring = rig.dataplane.rings.lookup(entry.ring_id)?.prefix(Int(entry.ring_len)) ?? []
        let addresses = ring.map { id in
            rig.dataplane.reals.lookup(id).flatMap { IPAddress(abiAddress: $0.addr, family: $0.af) }
        }
        return (entry.hash_seed, addresses)
    }

    @Test("pins of a services map without the seed (48-byte values) are refused by name, with the fix")
    func stalePins() async throws {
        let pins = "/sys/fs/bpf/tandem-test-\(getpid())-stale"
        defer { BPFFS.removeTree(pins) }
        let made = try await Command.run(
            "sh",
            [
                "-c",
                "mkdir -p \(pins) && bpftool map create \(pins)/services type hash key 20 value 48 entries 1024 name services"
            ])
        #expect(made.status == 0, "\(made.output)")
        let error = #expect(throws: SystemCallError.self) { try Dataplane(pinRoot: pins) }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("\(pins)/services") && text.contains("20/48") && text.contains("tandem down"), "\(text)")
    }
}
