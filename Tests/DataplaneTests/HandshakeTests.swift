import BPF
import Configuration
@testable import Dataplane
import Foundation
import Frames
import Model
import TandemABI
import TestSupport
import TestTraits
import Testing

/// When state is written (docs/design/floods.md, "When state is written"): a SYN writes nothing, the
/// first packet after it writes the record and the flow, so spoofed SYNs
/// that are never answered cannot push out the state of real clients.
@Suite("SYN and ACK state rules", .privileged)
struct HandshakeTests {
    static let vip = "198.18.0.100"

    func packet(
        _ client: String, _ port: UInt16, sport: UInt16 = 40000, flags: UInt8, vip: String = vip
    )
        -> PacketSpec
    {
        PacketSpec(src: client, dst: vip, sport: sport, dport: port, tcpFlags: flags)
    }

    /// 198.18.128.0 and up: sources no test client uses.
    static func spoofed(_ i: Int) -> String { "198.18.\(128 + i / 256).\(i % 256)" }

    @Test("a SYN is forwarded by the ring but writes no flow and no record; its ACK writes both")
    func synWritesNothing() throws {
        let rig = try Rig()
        let syn = try rig.send(packet("198.18.10.7", 80, flags: TCPFlags.syn))
        #expect(syn.verdict == .tx && syn.real == rig.scheduled(service: 0, client: "198.18.10.7"))
        #expect(rig.dataplane.flowCount() == 0 && rig.dataplane.records().isEmpty)
        #expect(rig.dataplane.tableCounters().synStateless == 1)
        #expect(rig.dataplane.counters(service: 0).newFlows == 0)

        let ack = try rig.send(packet("198.18.10.7", 80, flags: TCPFlags.ack))
        #expect(ack.real == syn.real)
        #expect(rig.dataplane.flowCount() == 1 && rig.dataplane.records().map(\.real) == [syn.real!])
        let t = rig.dataplane.tableCounters()
        #expect(t.flowsWritten == 1 && t.recordsWritten == 1 && t.flowsWrittenFull == 0)
        #expect(rig.dataplane.counters(service: 0).newFlows == 1)
    }

    @Test("a SYN with a live record goes to the record's real, and the ACK counts the hit")
    func synFollowsRecord() throws {
        let rig = try Rig()
        let client = "198.18.10.8"
        let other = Topology.shopReals.first { $0 != rig.scheduled(service: 0, client: client) }!
        try rig.seedRecord(service: 0, client: client, real: other, ageNs: 1_000_000)
        #expect(try rig.send(packet(client, 443, flags: TCPFlags.syn)).real == other)
        #expect(rig.dataplane.counters(service: 1).followHits == 0)
        #expect(try rig.send(packet(client, 443, flags: TCPFlags.ack)).real == other)
        #expect(rig.dataplane.counters(service: 1).followHits == 1)
    }

    @Test("spoofed SYNs filling far more than the tables leave a completed client's record and flow in place")
    func floodKeepsRecords() throws {
        let rig = try Rig(tables: TableSizes(flows: 1024, records: 1024))
        let client = "198.18.10.9"
        let first = try rig.connect(PacketSpec(src: client, dst: Self.vip, sport: 40000, dport: 80))
        for i in 0..<8192 {
            _ = try rig.send(packet(Self.spoofed(i), 80, sport: UInt16(1024 + i % 50000), flags: TCPFlags.syn))
        }
        #expect(rig.dataplane.records().count == 1 && rig.dataplane.flowCount() == 1)
        #expect(rig.dataplane.tableCounters().synStateless >= 8192)
        #expect(try rig.send(packet(client, 80, flags: TCPFlags.ack)).real == first.real)
        // Its :443 connection follows the record (a follow hit, not the ring).
        #expect(try rig.connect(PacketSpec(src: client, dst: Self.vip, sport: 40001, dport: 443)).real == first.real)
        #expect(rig.dataplane.counters(service: 1).followHits == 1)
    }

    @Test("completed handshakes beyond the table's size push records out, and the full-table counters show it")
    func fullTableCounted() throws {
        let rig = try Rig(tables: TableSizes(flows: 1024, records: 1024))
        // Each CPU reads the table's fill again only every 256 of its own
        // writes: on one CPU the count is late by at most 256 writes, where
        // a run moving between CPUs counted 704 of about 2,000.
        try CPUAffinity.pin(to: 0)
        defer { try? CPUAffinity.pin(to: nil) }
        for i in 0..<3000 {
            try rig.connect(PacketSpec(src: Self.spoofed(i), dst: Self.vip, sport: 40000, dport: 80))
        }
        let t = rig.dataplane.tableCounters()
        #expect(rig.dataplane.records().count <= 1024 && rig.dataplane.flowCount() <= 1024)
        #expect(t.recordsWritten == 3000 && t.flowsWritten == 3000)
        // About 2,000 of the 3,000 writes found the table full, less the
        // last CPU's late reading.
        #expect((1000...2100).contains(t.recordsWrittenFull), "\(t)")
        #expect((1000...2100).contains(t.flowsWrittenFull), "\(t)")
    }

    @Test("a ring change between a SYN and its ACK: the ACK still reaches the SYN's real")
    func ringChangeBetweenSynAndAck() throws {
        let rig = try Rig()
        // Clients whose ring choice moves when a fourth real joins.
        let extra = IPAddress("198.18.0.24")!
        func joined(_ c: inout Config) {
            for s in 0...2 {
                c.services[s].reals.append(Config.Real(address: extra, port: c.services[s].port, weight: 3))
            }
        }
        let clients = (1...200).map { "198.18.11.\($0)" }
        var before: [String: UInt32] = [:]
        for c in clients { before[c] = try rig.send(packet(c, 80, flags: TCPFlags.syn)).real }
        try rig.reload(joined)
        let moved = clients.filter { rig.scheduled(service: 0, client: $0) != before[$0] }
        #expect(moved.count > 10, "a quarter of the clients move to the new real")
        for c in clients { #expect(try rig.send(packet(c, 80, flags: TCPFlags.ack)).real == before[c], "\(c)") }
        #expect(rig.dataplane.tableCounters().previousRingUsed == UInt64(clients.count))

        // SYNs after the change take the new ring and remember it, so a
        // second change (the new real's weight) before their ACK does not
        // move them either.
        let late = (1...50).map { "198.18.12.\($0)" }
        var chosen: [String: UInt32] = [:]
        for c in late { chosen[c] = try rig.send(packet(c, 80, flags: TCPFlags.syn)).real }
        #expect(late.allSatisfy { chosen[$0] == rig.scheduled(service: 0, client: $0) })
        try rig.reload { c in
            for s in 0...2 {
                for r in c.services[s].reals.indices where c.services[s].reals[r].address == extra {
                    c.services[s].reals[r].weight = 1
                }
            }
        }
        #expect(late.contains { rig.scheduled(service: 0, client: $0) != chosen[$0] }, "the second change moves some")
        for c in late { #expect(try rig.send(packet(c, 80, flags: TCPFlags.ack)).real == chosen[c], "\(c)") }
        #expect(rig.dataplane.tableCounters().synChoicesUsed == UInt64(late.count))
    }

    @Test("wrr: the ACK reaches its SYN's real although the cursor moved on")
    func wrrRemembersChoice() throws {
        let rig = try Rig()
        let vip = "198.18.0.101"  // weighted: .31 weight 3, .32 weight 1, no persistence
        var chosen: [UInt16: UInt32] = [:]
        for sport in UInt16(41000)..<41008 {
            chosen[sport] = try rig.send(packet("198.18.10.20", 80, sport: sport, flags: TCPFlags.syn, vip: vip)).real
        }
        #expect(Set(chosen.values).count == 2, "the cursor went round both reals")
        for sport in chosen.keys.sorted().reversed() {
            #expect(
                try rig.send(packet("198.18.10.20", 80, sport: sport, flags: TCPFlags.ack, vip: vip)).real
                    == chosen[sport])
        }
        let t = rig.dataplane.tableCounters()
        #expect(t.synRemembered == 8 && t.synChoicesUsed == 8 && t.synStateless == 0)
    }

    @Test("pinned tables of another size are refused with the fix, and nothing is changed")
    func pinnedSizesDiffer() throws {
        let rig = try Rig(tables: TableSizes(flows: 2048, records: 4096))
        try rig.connect(PacketSpec(src: "198.18.10.7", dst: Self.vip, dport: 80))
        let error = #expect(throws: DataplaneError.self) {
            try Dataplane(pinRoot: rig.dataplane.pinRoot, tables: TableSizes(flows: 2048, records: 8192))
        }
        #expect(error?.description.contains("has 4096 entries, the config's tables.records asks for 8192") == true)
        #expect(error?.description.contains("tandem down") == true)
        #expect(rig.dataplane.records().count == 1)
        let again = try Dataplane(pinRoot: rig.dataplane.pinRoot, tables: TableSizes(flows: 2048, records: 4096))
        #expect(again.tableSizes == TableSizes(flows: 2048, records: 4096) && again.records().count == 1)
    }

    @Test("the memory `tandem check` shows for the tables is what the kernel charges for them")
    func tableMemory() throws {
        let rig = try Rig(tables: TableSizes(flows: 100_000, records: 300_000))
        func memlock(_ fd: Int32) -> Int {
            let text = (try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8)) ?? ""
            let line = text.split(separator: "\n").first { $0.hasPrefix("memlock:") }
            return line.flatMap { Int($0.split(separator: "\t").last ?? "") } ?? -1
        }
        for (kernel, ours) in [
            (memlock(rig.dataplane.flows.fd), TableMemory.flows(100_000)),
            (memlock(rig.dataplane.persist.fd), TableMemory.records(300_000))
        ] {
            #expect(abs(kernel - ours) < max(ours / 100, 4096), "kernel \(kernel), computed \(ours)")
        }
    }
}
